"""The leaderboard's page (``index.html``): a static file generated from the records.

Figures on the page; one row per (suite, architecture, options, budget), scored over its valid
seeds (:mod:`bench.groups`: worst case, attack success, mean ± 95% interval); each row links
to its seeds' reports (Tables 1-3, Figs. 2-4) and per-example files; filters for dataset,
options, budget, recipe and validity; click a heading to sort. Invalid rows carry their
reason and no rank. Everything shown is escaped (names and error texts come from records, which
may come from anyone). A hash ``#selftest-...`` drives it for the browser test and reports the
visible rows in the title.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from .views import COLUMNS, fmt, groups, link

FILTERS = ("dataset", "options", "budget", "recipe", "validity")

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dptq-bench leaderboard</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1500px; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 7px; text-align: right; }}
th {{ cursor: pointer; background: #f3f3f3; }} th.asc::after {{ content: " \\25B2"; }}
th.desc::after {{ content: " \\25BC"; }} td.text {{ text-align: left; }}
tr.invalid td {{ color: #777; background: #fafafa; }} .reason {{ color: #a33; font-size: 12px; }}
.filters label {{ margin-right: 1.2em; }} figure {{ display: inline-block; margin: 0 1em 1em 0; }}
img {{ max-width: 620px; border: 1px solid #ddd; }}
</style></head><body>
<h1>dptq-bench leaderboard</h1>
<p>Catastrophic failure under dynamic post-training quantization (Frank &amp; Ardis 2025 and
beyond). <b>gap</b>: f_D's quantized drop minus f_R's (points). <b>hidden gap</b>: f_D's drop under
its own policy minus its worst drop under any other allocation (pi_R, uniform, random): large when
only pi_D triggers the failure. <b>FP match</b>: |FP f_R - FP f_D|. A row is ranked only when it is
valid under its protocol (selected on the validation split, FP match and FP drops within bounds,
f_N well above chance); invalid rows show their reason. Numbers are means over seeds (± sd, n).
The deployer's columns (<code>-</code> where a suite did not run them): <b>policy-only attack</b>:
f_N's drop under an adversarial bit allocation alone, weights frozen; <b>gap, best / worst
quantizer</b>: the gap under the activation quantizer that shrinks / widens it most; <b>gap after
best defense</b>: the smallest gap a defense leaves at an acceptable FP cost.</p>
<figure><img src="gap.png" alt="gap and hidden gap"><figcaption>gap and hidden gap</figcaption></figure>
<figure><img src="fp_vs_gap.png" alt="FP accuracy vs gap"><figcaption>FP accuracy vs gap</figcaption></figure>
<div class="filters">{filters}</div>
<table id="board"><thead><tr>{head}</tr></thead><tbody>
{rows}
</tbody></table>
<script>
const table = document.getElementById("board");
function sortBy(col) {{
  const th = table.tHead.rows[0].cells[col], asc = !th.classList.contains("asc");
  for (const h of table.tHead.rows[0].cells) h.classList.remove("asc", "desc");
  th.classList.add(asc ? "asc" : "desc");
  const key = r => {{ const v = r.cells[col].dataset.v; const n = parseFloat(v); return isNaN(n) ? v : n; }};
  const rows = Array.from(table.tBodies[0].rows);
  rows.sort((a, b) => {{ const x = key(a), y = key(b);
    const c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
    return asc ? c : -c; }});
  for (const r of rows) table.tBodies[0].appendChild(r);
}}
function applyFilters() {{
  const chosen = {{}};
  for (const s of document.querySelectorAll(".filters select")) chosen[s.name] = s.value;
  for (const r of table.tBodies[0].rows)
    r.hidden = Object.entries(chosen).some(([k, v]) => v !== "" && r.dataset[k] !== v);
}}
document.querySelectorAll("#board th").forEach((th, i) => th.addEventListener("click", () => sortBy(i)));
document.querySelectorAll(".filters select").forEach(s => s.addEventListener("change", applyFilters));
if (location.hash.startsWith("#selftest-")) {{  // the browser test: sort-COL-N or filter-NAME-VALUE
  const [what, a, b] = decodeURIComponent(location.hash.slice(10)).split("~");
  if (what === "sort") for (let i = 0; i < Number(b); i++) document.querySelectorAll("#board th")[Number(a)].click();
  if (what === "filter") {{ const s = document.querySelector(`select[name="${{a}}"]`); s.value = b;
    s.dispatchEvent(new Event("change")); }}
  const col = what === "sort" ? Number(a) : 2;  // filters report the architectures
  document.title = "rows:" + Array.from(table.tBodies[0].rows).filter(r => !r.hidden)
    .map(r => r.cells[col].dataset.v).join("|");
}}
</script></body></html>
"""


def _select(name: str, values) -> str:
    opts = "".join(
        f'<option value="{html.escape(str(v))}">{html.escape(str(v))}</option>' for v in values
    )
    return (
        f'<label>{name} <select name="{name}"><option value="">all</option>{opts}</select></label>'
    )


def _cell(text: str, value, numeric: bool) -> str:
    cls = "" if numeric else ' class="text"'
    return f'<td{cls} data-v="{html.escape(str(value))}">{text}</td>'


def render_html(df: pd.DataFrame, out: Path) -> str:
    g = groups(df)
    cols = [
        ("rank", "rank"),
        ("dataset", "dataset"),
        *COLUMNS,
        ("reasons", "reason"),
        ("links", "reports"),
    ]
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in cols)
    rows = []
    for _, row in g.iterrows():
        cells = []
        for k, _ in cols:
            if k == "links":
                parts = []
                for seed, rep, pe, root in row.links:
                    rep = rep.replace("report.md", "report.html") if isinstance(rep, str) else None
                    rep_html = link(root, rep, out)
                    a = f'<a href="{html.escape(rep_html)}">s{seed}</a>' if rep_html else f"s{seed}"
                    pe_link = link(root, pe, out)
                    if pe_link:
                        a += f' (<a href="{html.escape(pe_link)}">per-example</a>)'
                    parts.append(a)
                cells.append(_cell(" ".join(parts), len(parts), False))
                continue
            if k == "reasons":
                cells.append(
                    _cell(
                        f'<span class="reason">{html.escape(row.reasons)}</span>',
                        row.reasons,
                        False,
                    )
                )
                continue
            v = row[k] if k in row else None
            text = "-" if k == "rank" and (v is None or v != v) else fmt(row, k)
            numeric = isinstance(v, int | float) and not isinstance(v, bool) and v == v
            cells.append(_cell(html.escape(text), v if numeric else text, numeric))
        attrs = {
            "dataset": row.dataset,
            "options": row.options,
            "budget": row.budget,
            "recipe": row.recipe,
            "validity": "valid" if row.valid else "invalid",
        }
        data = " ".join(f'data-{k}="{html.escape(str(v))}"' for k, v in attrs.items())
        cls = "" if row.valid else ' class="invalid"'
        rows.append(f"<tr{cls} {data}>" + "".join(cells) + "</tr>")
    values = {
        "dataset": sorted(g.dataset.unique()) if not g.empty else [],
        "options": sorted(g.options.unique()) if not g.empty else [],
        "budget": sorted(g.budget.unique()) if not g.empty else [],
        "recipe": sorted(g.recipe.unique()) if not g.empty else [],
        "validity": ["valid", "invalid"],
    }
    filters = " ".join(_select(name, values[name]) for name in FILTERS)
    return TEMPLATE.format(head=head, rows="\n".join(rows), filters=filters)
