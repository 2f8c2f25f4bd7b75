"""The leaderboard's page (``index.html``): a static file generated from the records.

What a person choosing an architecture reads first, then the rest (RobustBench's site is the
model: a few headline columns, the details one click away):

- per dataset, the **architecture view** (:func:`bench.board.groups.architecture_view`) and its
  comparison figure (architectures on one axis, each seed a dot, the worst case marked);
- **every cell** (suite, architecture, options, budget) in one table of headline columns (rank,
  architecture, cell, worst-case gap, attack success, worst hidden gap, FP accuracies, seeds);
  a click on a row opens its detail below it: every column of the board, the invalid seeds'
  reasons, each seed's report and per-example file, and the bits-per-layer figure;
- filters (dataset, suite, options, budget, validity) and sorting by any headline column;
- the full-precision indicators' AUC table (:mod:`bench.board.indicators`).

Everything shown is escaped (names and error texts come from records, which may come from
anyone). A hash ``#selftest-...`` drives it for the browser test and reports in the title.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from ..names import figure_name, roc_name
from .groups import ARCH_COLUMNS, architecture_view
from .indicators import HEADER, cells, indicator_table
from .paper_table import board_html
from .views import COLUMNS, fmt, groups, link

FILTERS = ("dataset", "division", "suite", "options", "budget", "validity")
HEADLINE = [  # (field, heading): the table's columns; the rest is in each row's detail
    ("rank", "rank"),
    ("architecture", "architecture"),
    ("cell", "options / budget"),
    ("gap_worst", "worst-case gap"),
    ("attack_success", "attack success"),
    ("hidden_gap_worst", "worst hidden gap"),
    ("f_n_acc", "f_N acc"),
    ("f_d_fp_acc", "f_D FP acc"),
    ("seeds", "valid seeds"),
    ("division", "division"),
    ("suite", "suite"),
]

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; }
table { border-collapse: collapse; font-size: 13px; margin-bottom: 1em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f3f3f3; } #board th { cursor: pointer; }
th.asc::after { content: " \\25B2"; } th.desc::after { content: " \\25BC"; }
td.text { text-align: left; } tr.main { cursor: pointer; } tr.main:hover td { background: #eef4ff; }
tr.invalid td { color: #777; background: #fafafa; } .reason { color: #a33; font-size: 12px; }
tr.detail td { text-align: left; background: #fcfcf6; } tr.detail dl { columns: 3; margin: 0.3em; }
tr.detail dt { font-weight: bold; font-size: 12px; } tr.detail dd { margin: 0 0 0.3em 0; }
.filters { margin: 0.5em 0; } .filters label { margin-right: 1.2em; }
figure { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }
img { max-width: 560px; border: 1px solid #ddd; } p.note { max-width: 75em; }
"""

SCRIPT = """
const table = document.getElementById("board");
const mains = () => Array.from(table.tBodies[0].rows).filter(r => r.classList.contains("main"));
const detailOf = r => document.getElementById(r.dataset.detail);
function sortBy(col) {
  const th = table.tHead.rows[0].cells[col], asc = !th.classList.contains("asc");
  for (const h of table.tHead.rows[0].cells) h.classList.remove("asc", "desc");
  th.classList.add(asc ? "asc" : "desc");
  const key = r => { const v = r.cells[col].dataset.v; const n = parseFloat(v); return isNaN(n) ? v : n; };
  const rows = mains();
  rows.sort((a, b) => { const x = key(a), y = key(b);
    const c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
    return asc ? c : -c; });
  for (const r of rows) { table.tBodies[0].appendChild(r); table.tBodies[0].appendChild(detailOf(r)); }
}
function applyFilters() {
  const chosen = {};
  for (const s of document.querySelectorAll(".filters select")) chosen[s.name] = s.value;
  for (const r of mains()) {
    r.hidden = Object.entries(chosen).some(([k, v]) => v !== "" && r.dataset[k] !== v);
    if (r.hidden) detailOf(r).hidden = true;
  }
}
function toggle(r) { const d = detailOf(r); d.hidden = !d.hidden; }
document.querySelectorAll("#board th").forEach((th, i) => th.addEventListener("click", () => sortBy(i)));
document.querySelectorAll(".filters select").forEach(s => s.addEventListener("change", applyFilters));
mains().forEach(r => r.addEventListener("click", e => { if (!e.target.closest("a")) toggle(r); }));
if (location.hash.startsWith("#selftest-")) {  // the browser test: sort~COL~N, filter~NAME~VALUE, open~ROW
  const [what, a, b] = decodeURIComponent(location.hash.slice(10)).split("~");
  if (what === "sort") for (let i = 0; i < Number(b); i++) document.querySelectorAll("#board th")[Number(a)].click();
  if (what === "filter") { const s = document.querySelector(`select[name="${a}"]`); s.value = b;
    s.dispatchEvent(new Event("change")); }
  if (what === "open") mains()[Number(a)].cells[1].click();
  const col = what === "sort" ? Number(a) : 1;  // filters report the architectures
  const shown = mains().filter(r => !r.hidden).map(r => r.cells[col].dataset.v).join("|");
  const open = Array.from(table.querySelectorAll("tr.detail")).filter(d => !d.hidden)
    .map(d => d.dataset.figures + ":" + d.querySelectorAll("a").length).join("|");
  document.title = "rows:" + shown + ";open:" + open;
}
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


def _value(row, k: str) -> tuple[str, object, bool]:
    """(shown text, sort value, numeric) of one headline column."""
    if k == "cell":
        text = f"{row.options} / {row.budget}"
        return text, text, False
    v = row[k] if k in row else None
    text = "-" if k == "rank" and (v is None or v != v) else fmt(row, k)
    numeric = isinstance(v, int | float) and not isinstance(v, bool) and v == v
    return text, v if numeric else text, numeric


def _detail(row, out: Path, span: int, ident: str) -> str:
    """A cell's detail row: every board column, the reasons, each seed's files, its figure."""
    items = "".join(
        f"<dt>{html.escape(h)}</dt><dd>{html.escape(fmt(row, k))}</dd>" for k, h in COLUMNS
    )
    if row.reasons:
        items += f'<dt>invalid seeds</dt><dd class="reason">{html.escape(row.reasons)}</dd>'
    seeds, figures = [], []
    for seed, rep, pe, root in row.links:
        parts = [f"seed {seed}:"]
        rep_html = rep.replace("report.md", "report.html") if isinstance(rep, str) else None
        if (href := link(root, rep_html, out)) is not None:
            parts.append(f'<a href="{html.escape(href)}">report</a>')
        if (href := link(root, pe, out)) is not None:
            parts.append(f'<a href="{html.escape(href)}">per-example</a>')
        seeds.append(" ".join(parts))
        if isinstance(rep, str):
            fig = str(Path(rep).parent / "bits_per_layer.png")
            if (Path(root or out) / fig).exists() and not figures:
                figures.append(
                    f'<figure><img src="{html.escape(link(root, fig, out))}" alt="bits per layer">'
                    f"<figcaption>bits per layer, seed {seed}</figcaption></figure>"
                )
    body = f"<dl>{items}</dl><p>{' &middot; '.join(seeds)}</p>{''.join(figures)}"
    return (
        f'<tr class="detail" id="{ident}" data-figures="{len(figures)}" hidden>'
        f'<td colspan="{span}">{body}</td></tr>'
    )


def _board_rows(g: pd.DataFrame, out: Path) -> list[str]:
    rows = []
    for i, (_, row) in enumerate(g.iterrows()):
        cells = []
        for k, _ in HEADLINE:
            text, value, numeric = _value(row, k)
            cells.append(_cell(html.escape(text), value, numeric))
        attrs = {
            "dataset": row.dataset,
            "division": row.division,
            "suite": row.suite,
            "options": row.options,
            "budget": row.budget,
            "validity": "valid" if row.valid else "invalid",
        }
        data = " ".join(f'data-{k}="{html.escape(str(v))}"' for k, v in attrs.items())
        cls = "main" if row.valid else "main invalid"
        rows.append(f'<tr class="{cls}" {data} data-detail="d{i}">' + "".join(cells) + "</tr>")
        rows.append(_detail(row, out, len(HEADLINE), f"d{i}"))
    return rows


def _architectures(g: pd.DataFrame, out: Path) -> list[str]:
    """Per dataset: the architecture view's table and its comparison figure."""
    arch = architecture_view(g) if not g.empty else g
    parts = []
    for dataset in sorted(arch.dataset.unique()) if not arch.empty else []:
        a = arch[arch.dataset == dataset]
        head = "".join(f"<th>{html.escape(h)}</th>" for _, h in ARCH_COLUMNS) + "<th>valid</th>"
        body = []
        for _, row in a.iterrows():
            cells = "".join(
                f'<td class="text">{html.escape(fmt(row, k, 1))}</td>'
                if k
                in (
                    "architecture",
                    "suite",
                    "seeds",
                    "attack_success",
                    "winners",
                    "verdict",
                    "trust",
                )
                else f"<td>{html.escape(fmt(row, k, 1))}</td>"
                for k, _ in ARCH_COLUMNS
            )
            verdict = (
                "yes"
                if row.valid
                else f'<span class="reason">no: {html.escape(row.reasons)}</span>'
            )
            cls = "" if row.valid else ' class="invalid"'
            body.append(f'<tr{cls}>{cells}<td class="text">{verdict}</td></tr>')
        figure = figure_name(dataset)
        parts += [
            f"<h2>{html.escape(dataset)}: architectures under the standard attack "
            f"({html.escape(', '.join(sorted(set(a.attack))))}, {html.escape(str(a.iloc[0].cell))})"
            "</h2>",
            f'<table class="arch"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>',
        ]
        if (out / figure).exists():
            parts.append(
                f'<figure><img src="{html.escape(figure)}" alt="gap per architecture, each seed">'
                "<figcaption>gap per architecture at the common cell: each seed a dot, the worst "
                "case marked</figcaption></figure>"
            )
    return parts


def _indicators(df: pd.DataFrame, out: Path) -> list[str]:
    parts = []
    for dataset in sorted(df.dataset.unique()) if not df.empty else []:
        t = indicator_table(df[df.dataset == dataset])
        if t.empty:
            continue
        head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
        lines = [f"<tr><th>indicator</th>{head}</tr>"]
        for _, r in t.iterrows():
            row = "".join(f"<td>{html.escape(c)}</td>" for c in cells(r))
            lines.append(f'<tr><td class="text">{html.escape(r.indicator)}</td>{row}</tr>')
        parts += [
            f"<h2>{html.escape(dataset)}: can a deployer tell f_D from f_R or f_N at full "
            "precision?</h2>",
            '<p class="note">ROC AUC of each full-precision indicator (analysis '
            "<code>fp_indicators</code>, no quantizer involved) at separating f_D from f_R and from "
            "f_N (the student both were copied from); 0.5 is chance, below 0.5 the indicator "
            "points the other way.</p>",
            f"<table>{''.join(lines)}</table>",
        ]
        if (out / roc_name(dataset)).exists():
            parts.append(f'<figure><img src="{html.escape(roc_name(dataset))}" alt="ROC"></figure>')
    return parts


NOTE = (
    "Catastrophic failure under dynamic post-training quantization (Frank &amp; Ardis 2025 and "
    "beyond). The architectures are ranked in the <b>closed division</b> only: one standard "
    "attack, fixed in code and versioned, for every architecture; the <b>open division</b> holds "
    "every other result, each row named by what it changes from it. <b>gap</b>: f_D's quantized drop minus f_R's (points); a cell is scored by what an "
    "attacker can reach: its <b>worst-case gap</b> over the valid seeds (the rank, most robust "
    "first) and its <b>attack success</b> (valid seeds whose f_D dropped by more than 10 points "
    "under its own policy). <b>hidden gap</b>: f_D's drop under its own policy minus its worst "
    "drop under any other allocation. A row is ranked only when a seed is valid under its "
    "protocol; invalid rows show their reason. Click a row for every number, the reports and the "
    "bits per layer; click a heading to sort."
)


def render_html(df: pd.DataFrame, out: Path) -> str:
    g = groups(df)
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in HEADLINE)
    values = {
        k: sorted(g[k].unique()) if not g.empty else [] for k in FILTERS if k != "validity"
    } | {"validity": ["valid", "invalid"]}
    filters = " ".join(_select(name, values[name]) for name in FILTERS)
    body = [
        "<h1>dptq-bench leaderboard</h1>",
        f'<p class="note">{NOTE}</p>',
        *_architectures(g, out),
        "<h2>Every cell</h2>",
        # one bar pair per cell: as wide as the page, the full size a click away
        '<figure><a href="gap.png"><img src="gap.png" alt="gap and hidden gap" style="max-width:'
        ' 100%"></a><figcaption>worst-case and hidden gap per cell (click for full size)'
        "</figcaption></figure>",
        '<figure><img src="fp_vs_gap.png" alt="FP accuracy vs gap"><figcaption>FP accuracy vs gap'
        "</figcaption></figure>",
        f'<div class="filters">{filters}</div>',
        f'<table id="board"><thead><tr>{head}</tr></thead><tbody>',
        *_board_rows(g, out),
        "</tbody></table>",
        *_indicators(df, out),
        *board_html(df),
    ]
    failed = df[df.error != ""] if not df.empty else df
    for _, row in failed.iterrows():
        body.append(f"<p>Failed: <code>{html.escape(row.id)}</code>: {html.escape(row.error)}</p>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>dptq-bench leaderboard</title><style>{STYLE}</style></head><body>\n"
        + "\n".join(body)
        + f"\n<script>{SCRIPT}</script></body></html>\n"
    )
