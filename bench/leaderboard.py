"""The leaderboard: records (JSON lines, ``leaderboard/records.jsonl``) and the views rendered from them.

Views are a pure function of the records (sorted, fixed formatting), so the same records give
byte-identical files: ``leaderboard/README.md`` (ranked tables per dataset, most robust first),
``leaderboard/leaderboard.csv``, ``leaderboard/gap.png`` (gap per architecture and budget),
``leaderboard/fp_vs_gap.png`` and ``leaderboard/index.html`` (a static page with sortable columns).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from dptq.engine import atomic_file, write_atomic  # noqa: E402

from .faults import failpoint  # noqa: E402
from .records import SCHEMA_VERSION, RecordError, append_records  # noqa: E402

LEADERBOARD = Path("leaderboard")
REQUIRED = {
    1: (
        "id",
        "suite",
        "suite_hash",
        "seed",
        "dataset",
        "architecture",
        "bit_options",
        "options",
        "budget",
        "error",
        "date",
        "git_commit",
        "versions",
        "hardware",
    ),
}
NUMBERS = (
    "f_n_acc",
    "f_r_fp_acc",
    "f_r_q_acc",
    "f_r_drop",
    "f_d_fp_acc",
    "f_d_q_acc",
    "f_d_drop",
    "gap",
    "fp_match",
    "f_d_random_acc",
    "transitory_rate_test",
    "transitory_rate_both_correct",
)


def validate(rec: dict, where: str) -> dict:
    """Check one record against its schema version; returns it (upgraded to the current version)."""
    if not isinstance(rec, dict):
        raise RecordError(f"{where}: a record must be a JSON object")
    version = rec.get("schema_version")
    if version not in REQUIRED:
        raise RecordError(
            f"{where}: schema_version {version!r} is not supported (this tool reads "
            f"{sorted(REQUIRED)}); upgrade dptq-bench or re-run the suite"
        )
    missing = [k for k in REQUIRED[version] if k not in rec]
    if missing:
        raise RecordError(f"{where}: missing field(s) {', '.join(missing)}")
    if rec["error"] is None:
        absent = [k for k in NUMBERS if not isinstance(rec.get(k), int | float)]
        if absent:
            raise RecordError(f"{where}: a successful record needs numbers for {', '.join(absent)}")
    return rec


def load_records(path: Path = LEADERBOARD / "records.jsonl") -> list[dict]:
    """Every record of ``path``, validated; a malformed line gives one line naming file and line."""
    if not path.exists():
        return []
    records = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise RecordError(
                f"{path}:{i}: not valid JSON ({e.msg}); fix or remove that line"
            ) from None
        records.append(validate(rec, f"{path}:{i}"))
    return records


def frame(records: list[dict]) -> pd.DataFrame:
    """One row per record, sorted by dataset, then most robust first (smallest gap), then id."""
    rows = []
    for r in records:
        row = {
            "dataset": r["dataset"],
            "architecture": r["architecture"],
            "options": r["bit_options"],
            "budget": r["budget"],
            "suite": r["suite"],
            "seed": r["seed"],
            "id": r["id"],
            "error": r["error"] or "",
        }
        for k in NUMBERS:
            row[k] = r.get(k)
        corr = r.get("corruption_mean_acc") or {}
        row["corr_f_d_q"] = corr.get("f_D quantized")
        row["best_delta_D"] = (r.get("best") or {}).get("detrimental", {}).get("delta")
        row["retries"] = len(r.get("retries") or [])
        rows.append(row)
    df = pd.DataFrame(
        rows,
        columns=[
            "dataset",
            "architecture",
            "options",
            "budget",
            "suite",
            "seed",
            "id",
            "error",
            *NUMBERS,
            "corr_f_d_q",
            "best_delta_D",
            "retries",
        ],
    )
    df["_failed"] = df.error != ""
    df = df.sort_values(["dataset", "_failed", "gap", "id"], na_position="last", kind="mergesort")
    return df.drop(columns="_failed").reset_index(drop=True)


def _fmt(v, digits=2) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


COLUMNS = [
    ("architecture", "architecture"),
    ("options", "options"),
    ("budget", "budget"),
    ("f_n_acc", "f_N acc"),
    ("f_r_fp_acc", "f_R FP"),
    ("f_r_drop", "f_R drop"),
    ("f_d_fp_acc", "f_D FP"),
    ("f_d_drop", "f_D drop"),
    ("gap", "gap"),
    ("fp_match", "FP match"),
    ("f_d_random_acc", "f_D random"),
    ("transitory_rate_test", "transitory %"),
    ("corr_f_d_q", "f_D Q corrupted"),
    ("retries", "retries"),
    ("suite", "suite"),
]


def render_markdown(df: pd.DataFrame) -> str:
    lines = [
        "# dptq-bench leaderboard",
        "",
        "Catastrophic failure under dynamic post-training quantization, per architecture, bit "
        "options and budget. **gap** = quantized drop of the detrimental pair minus that of the "
        "robust pair (points; smaller is more robust); **FP match** = |FP f_R - FP f_D| (a gap "
        "only counts when this is small). Ranked most robust first. Generated by "
        "`python -m bench leaderboard` from `records.jsonl`; do not edit by hand.",
        "",
        "![gap per architecture and budget](gap.png) ![FP accuracy vs gap](fp_vs_gap.png)",
        "",
    ]
    if df.empty:
        return "\n".join(lines + ["No records yet.", ""])
    for dataset, g in df.groupby("dataset", sort=True):
        lines += [
            f"## {dataset}",
            "",
            "| rank | " + " | ".join(h for _, h in COLUMNS) + " |",
            "|---:|" + "---|" * len(COLUMNS),
        ]
        rank = 0
        for _, row in g.iterrows():
            if row.error:
                cells = (
                    [row.architecture, row.options, str(row.budget)]
                    + ["-"] * (len(COLUMNS) - 5)
                    + [str(row.retries), row.suite]
                )
                lines.append(f"| failed | {' | '.join(cells)} |")
                continue
            rank += 1
            lines.append(f"| {rank} | " + " | ".join(_fmt(row[k]) for k, _ in COLUMNS) + " |")
        failed = g[g.error != ""]
        for _, row in failed.iterrows():
            lines.append(f"\nFailed: `{row.id}`: {row.error}")
        lines.append("")
    return "\n".join(lines)


def render_pngs(df: pd.DataFrame, out: Path) -> list[Path]:
    ok = df[df.error == ""]
    paths = []
    fig, ax = plt.subplots(figsize=(7, 3.8))
    if not ok.empty:
        labels = [f"{a}\n{o} / {b}" for a, o, b in zip(ok.architecture, ok.options, ok.budget)]
        ax.bar(range(len(ok)), ok.gap, color="tab:red")
        ax.set_xticks(range(len(ok)), labels, fontsize=7)
    ax.set_ylabel("catastrophic-failure gap (points)")
    ax.set_title("Gap per architecture (bit options / budget)")
    paths.append(_save(fig, out / "gap.png"))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for arch, g in ok.groupby("architecture", sort=True):
        ax.scatter(g.f_d_fp_acc, g.gap, label=arch, s=30)
    ax.set_xlabel("f_D full-precision accuracy (%)")
    ax.set_ylabel("gap (points)")
    ax.set_title("Full-precision accuracy vs gap")
    if not ok.empty:
        ax.legend(fontsize=7)
    paths.append(_save(fig, out / "fp_vs_gap.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_file(path) as fh:
        fig.savefig(fh, dpi=100, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dptq-bench leaderboard</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }} table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th {{ cursor: pointer; background: #f3f3f3; }} th.asc::after {{ content: " \\25B2"; }}
th.desc::after {{ content: " \\25BC"; }} td.text {{ text-align: left; }}
</style></head><body>
<h1>dptq-bench leaderboard</h1>
<p>Click a column header to sort (again to reverse). gap = quantized drop of f_D minus that of f_R
(points); FP match = |FP f_R - FP f_D|.</p>
<table id="board"><thead><tr>{head}</tr></thead><tbody>
{rows}
</tbody></table>
<script>
function sortBy(col) {{
  const table = document.getElementById("board"), th = table.tHead.rows[0].cells[col];
  const asc = !th.classList.contains("asc");
  for (const h of table.tHead.rows[0].cells) h.classList.remove("asc", "desc");
  th.classList.add(asc ? "asc" : "desc");
  const rows = Array.from(table.tBodies[0].rows);
  const key = r => {{ const v = r.cells[col].dataset.v; const n = parseFloat(v);
    return isNaN(n) ? v : n; }};
  rows.sort((a, b) => {{ const x = key(a), y = key(b);
    const c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
    return asc ? c : -c; }});
  for (const r of rows) table.tBodies[0].appendChild(r);
}}
document.querySelectorAll("#board th").forEach((th, i) => th.addEventListener("click", () => sortBy(i)));
if (location.hash.startsWith("#selftest-")) {{  // the browser test: click a header N times, report order
  const [col, clicks] = location.hash.slice(10).split("-").map(Number);
  for (let i = 0; i < (Number.isNaN(clicks) ? 1 : clicks); i++) document.querySelectorAll("#board th")[col].click();
  document.title = "order:" + Array.from(document.querySelectorAll("#board tbody tr"))
    .map(r => r.cells[col].dataset.v).join("|");
}}
</script></body></html>
"""


def render_html(df: pd.DataFrame) -> str:
    cols = [("dataset", "dataset")] + COLUMNS
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in cols)
    rows = []
    for _, row in df.iterrows():
        cells = []
        for k, _ in cols:
            v = row[k]
            text = (
                _fmt(v)
                if not row.error
                or k in ("dataset", "architecture", "options", "budget", "retries", "suite")
                else "-"
            )
            num = isinstance(v, int | float) and not isinstance(v, bool) and v == v
            cls = "" if num else ' class="text"'
            cells.append(
                f'<td{cls} data-v="{html.escape(str(v) if num else text)}">{html.escape(text)}</td>'
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return HTML.format(head=head, rows="\n".join(rows))


def regenerate(
    records_path: Path = LEADERBOARD / "records.jsonl", out: Path | None = None
) -> list[Path]:
    """Write every view from the records; returns the written paths."""
    out = out or records_path.parent
    out.mkdir(parents=True, exist_ok=True)
    df = frame(load_records(records_path))
    # each view is replaced whole: a kill leaves the old file or the new one
    write_atomic(out / "README.md", render_markdown(df))
    write_atomic(out / "leaderboard.csv", df.to_csv(index=False, float_format="%.4f"))
    failpoint("leaderboard:views")
    write_atomic(out / "index.html", render_html(df))
    return [out / "README.md", out / "leaderboard.csv", out / "index.html", *render_pngs(df, out)]


def submit(run_records: Path, records_path: Path = LEADERBOARD / "records.jsonl") -> int:
    """Add a run's records (validated) to the leaderboard, copying their per-example results."""
    import shutil

    load_records(records_path)  # a broken board stops here, before anything is copied
    new = load_records(run_records)
    for r in new:
        src = Path(r.get("per_example") or "")
        if src.is_file():
            dest = records_path.parent / "per_example" / (r["id"].replace("/", "__") + ".json")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
            r["per_example"] = str(dest.relative_to(records_path.parent))
        r.pop("run_dir", None)
        r.pop("report", None)
    return append_records(new, records_path)


def compare(records: list[dict], a: str, b: str) -> pd.DataFrame:
    """Two run ids or architectures side by side per (options, budget), with B - A differences."""

    def pick(key):
        sel = [
            r
            for r in records
            if r["error"] is None and (r["id"].startswith(key) or r["architecture"] == key)
        ]
        if not sel:
            raise RecordError(
                f"no successful record matches {key!r} (a run id prefix or an architecture)"
            )
        return {(r["dataset"], r["bit_options"], r["budget"]): r for r in sel}

    ra, rb = pick(a), pick(b)
    rows = []
    for key in sorted(set(ra) & set(rb), key=str):
        row = {"dataset": key[0], "options": key[1], "budget": key[2]}
        for k in ("f_n_acc", "f_d_drop", "f_r_drop", "gap", "fp_match"):
            row[f"{k} A"], row[f"{k} B"] = ra[key][k], rb[key][k]
            row[f"{k} B-A"] = rb[key][k] - ra[key][k]
        rows.append(row)
    if not rows:
        raise RecordError(f"{a!r} and {b!r} share no (dataset, options, budget)")
    return pd.DataFrame(rows)


__all__ = [
    "SCHEMA_VERSION",
    "load_records",
    "regenerate",
    "submit",
    "compare",
    "RecordError",
    "validate",
]
