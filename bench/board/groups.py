"""A cell's seeds as one row, scored for a measure of *potential* failure, and the architecture view.

A cell is (suite, architecture, bit options, budget, recipe) over its seeds. A seed whose search
found no attack is the attacker's failure, not the architecture's robustness, so a cell is scored
by what an attacker can reach (issue 22):

- **worst case** (``gap_worst``, ``hidden_gap_worst``): the largest gap (hidden gap) among the
  cell's *valid* seeds; the board ranks valid cells by it, most robust (smallest) first;
- **attack success** (``attacks`` of ``n_valid``): valid seeds that found an attack
  (:func:`bench.records.protocol.judge`: f_D's drop under pi_D above ``protocol.attack_min``);
- the **mean with a 95% interval** (Student's t over the valid seeds, ``*_ci``: the half width);
- **specificity**: the smallest among the valid seeds that found an attack (the most specific
  attack reached; 0: only pi_D breaks f_D).

A cell is *valid* (ranked) when at least one of its seeds is; the invalid seeds' reasons are shown
beside it and none of their numbers enters a score. A cell with no valid seed is shown apart.
Cells are ranked within their division: the closed division (:mod:`bench.config.closed`: one standard
attack for every architecture) is the ranking; the open division's order compares recipes as
much as architectures.

:func:`architecture_view` is what a person choosing an architecture reads first: one row per
architecture of the closed division at each dataset's *common cell* (the bit options and bits per
layer that the most architectures share; the closed division fixes it), with a verdict in words
(:func:`verdict`): an architecture is shown as resisting the standard attack only when every
configuration of its portfolio failed on every seed.
"""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats

KEY = ["dataset", "division", "suite", "suite_hash", "architecture", "options", "budget", "recipe"]
WORST = ("gap", "hidden_gap")  # scored by their worst case over valid seeds


def _numbers(values) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(v)]


def interval(values: list[float]) -> float | None:
    """Half width of the 95% interval of the mean (Student's t, n - 1 degrees of freedom); None
    below two values."""
    if len(values) < 2:
        return None
    sd = pd.Series(values).std()
    return float(stats.t.ppf(0.975, len(values) - 1) * sd / math.sqrt(len(values)))


def groups(df: pd.DataFrame, measures: tuple[str, ...], names: tuple[str, ...]) -> pd.DataFrame:
    """The seeds of each cell (:data:`KEY`) together, scored over the valid ones (module
    docstring); ``measures``: the frame's numeric columns (mean, sd, 95% interval each),
    ``names``: its text columns (the seeds' choices, each once). Ranked within each dataset."""
    ok = df[df.error == ""]
    rows = []
    for key, g in ok.groupby(KEY, sort=True):
        row = dict(zip(KEY, key))
        good = g[g.valid]
        use = good if len(good) else g  # a cell with no valid seed shows all its numbers apart
        row["n"], row["n_valid"] = len(g), len(good)
        row["seeds"] = f"{len(good)}/{len(g)}"
        for k in measures:
            vals = _numbers(use[k])
            row[k] = sum(vals) / len(vals) if vals else None
            row[f"{k}_sd"] = pd.Series(vals).std() if len(vals) > 1 else None
            row[f"{k}_ci"] = interval(vals)
        for k in WORST:
            vals = _numbers(good[k])
            row[f"{k}_worst"] = max(vals) if vals else None
        gaps = _numbers(good.gap)
        row["gap_median"] = float(pd.Series(gaps).median()) if gaps else None
        row["attack"] = next((a for a in g.attack if a), None)
        row["winners"] = (
            ", ".join(f"s{s}: {c}" for s, c in zip(g.seed, g.configuration) if c) or None
        )
        walls = _numbers(g.wall_s)
        row["wall_min"] = sum(walls) / 60 if walls else None
        # every configuration failed on every seed: no test attack, no validation attack
        row["resists"] = bool(len(g)) and not (g.attacked.any() or g.portfolio_attack.any())
        row["also_in"] = ", ".join(dict.fromkeys(x for v in g.also_in for x in v.split(", ") if x))
        row["changes"] = next((c for c in g.changes if c), "")
        row["trust"] = trust_text(g)
        row["attacks"] = int(good.attacked.sum())
        row["attack_success"] = f"{row['attacks']}/{len(good)}" if len(good) else None
        spec = _numbers(good[good.attacked].specificity)
        row["specificity_best"] = min(spec) if spec else None
        for k in names:
            row[k] = "/".join(dict.fromkeys(v for v in use[k] if v)) or None
        row["valid"] = bool(len(good))
        row["reasons"] = "; ".join(
            f"seed {s}: {r}" if len(g) > 1 else r for s, r in zip(g.seed, g.reasons) if r
        )
        row["stealthy"] = bool(len(good)) and bool(good.stealthy.any())
        row["degenerate"] = bool(g.degenerate.any())
        row["retries"] = int(g.retries.sum())
        row["num_layers"] = int(g.num_layers.max()) if g.num_layers.notna().any() else None
        row["links"] = [
            (int(s), rep, pe, root)
            for s, rep, pe, root in zip(g.seed, g.report, g.per_example, g.root)
        ]
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_invalid"] = ~out.valid
    out = out.sort_values(
        ["dataset", "_invalid", "gap_worst", "architecture", "budget"], kind="mergesort"
    )
    out["rank"] = None
    for _, g in out[out.valid].groupby(["dataset", "division"]):
        out.loc[g.index, "rank"] = range(1, len(g) + 1)
    return out.drop(columns="_invalid").reset_index(drop=True)


def trust_text(g: pd.DataFrame) -> str:
    """How far a cell's seeds were checked, in words: self-reported, or how many were
    reproduced on another machine (the largest differences seen, any beyond tolerance) and how
    many re-evaluated from their networks (with the record's own arithmetic: identical, or the
    most examples that differed in one allocation; with other arithmetic: the most that
    differed, within or beyond the tolerance)."""
    rep, again = g[g.reproduced], g[g.reevaluated]
    parts = []
    if len(rep):
        gap, images = rep.trust_gap.max(), int(rep.trust_images.max())
        text = f"reproduced {len(rep)}/{len(g)} (gap within {gap:.1f} points, {images} images)"
        ok = rep.checked.all()
        parts.append(text if ok else text + ", beyond tolerance")
    if len(again):
        own, other = again.reevaluated_own_images.max(), again.reevaluated_other_images.max()
        said = []
        if again.reevaluated_images.max() == 0:
            said.append("identical")
        elif pd.notna(own):
            mine = "identical" if own == 0 else _examples(own, "up to ")
            said.append(f"{mine} with its own arithmetic")
        if pd.notna(other) and other:
            verdict = "within" if again.reevaluated_agrees.all() else "beyond"
            said.append(f"{_examples(other, 'up to ')} with other arithmetic, {verdict} tolerance")
        text = "; ".join(said)
        if not again.reevaluated_elsewhere.any():
            text += ", on the machine that made it"
        parts.append(f"re-evaluated {len(again)}/{len(g)} ({text})")
    return "; ".join(parts) or "self-reported"


def _examples(n, lead: str = "") -> str:
    """``n`` examples differing, in words ("1 example differs", "up to 3 examples differ")."""
    n = int(n)
    return f"{lead}{n} example differs" if n == 1 else f"{lead}{n} examples differ"


def verdict(row) -> str:
    """An architecture's result under the standard attack, in words (the architecture view)."""
    n, k = int(row["n"]), int(row["n_valid"])
    if row["attacks"]:
        return f"attacked on {row['attacks']} of {k} valid seeds"
    if row["resists"]:
        return (
            f"resists {row['attack'] or 'the attack'}: no configuration found an attack on any "
            f"of its {n} seeds"
        )
    if not k:
        return "no valid seed"
    return (
        f"no attack on its {k} valid seeds, yet not resisting: a configuration dropped f_D by "
        "more than the protocol's attack_min on validation or on an invalid seed"
    )


def bits_per_layer(row) -> float | None:
    """A cell's budget over its layer count (its average bits per layer), to one decimal."""
    L = row.get("num_layers")
    return None if not L else round(row["budget"] / L, 1)


def common_cells(g: pd.DataFrame) -> dict[str, tuple[str, float]]:
    """Per dataset, the (bit options, bits per layer) that the most architectures share (ties:
    the most seeds, then the smallest bits); ``g`` has a ``bits`` column (:func:`bits_per_layer`)."""
    out = {}
    for dataset, d in g[g.bits.notna()].groupby("dataset", sort=True):
        by = d.groupby(["options", "bits"], sort=True).agg(
            archs=("architecture", "nunique"), seeds=("n", "sum")
        )
        by = by.reset_index().sort_values(
            ["archs", "seeds", "bits"], ascending=[False, False, True], kind="mergesort"
        )
        top = by.iloc[0]
        out[dataset] = (top.options, float(top.bits))
    return out


ARCH_COLUMNS = [  # (field, heading) of the architecture view
    ("architecture", "architecture"),
    ("num_layers", "L"),
    ("seeds", "valid seeds"),
    ("f_n_acc", "f_N acc"),
    ("gap_worst", "worst-case gap"),
    ("attack_success", "attack success"),
    ("gap_median", "median gap"),
    ("hidden_gap_worst", "worst hidden gap"),
    ("specificity_best", "specificity"),
    ("fp_match", "FP match"),
    ("winners", "winning configuration"),
    ("wall_min", "wall time (min)"),
    ("verdict", "verdict"),
    ("trust", "checked"),
    ("suite", "suite"),
]


def architecture_view(g: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, architecture) of the closed division at the dataset's common cell
    (:func:`common_cells`), valid rows ranked by the worst-case gap, most robust first; invalid
    ones after them; each with its :func:`verdict`. Where several closed suites ran an
    architecture at that cell, the one with the most seeds, then the most valid ones, then the
    strongest attack (the largest worst-case gap: what an attacker can reach)."""
    if not g.empty:
        g = g[g.division == "closed"]
    if g.empty:
        return pd.DataFrame()
    g = g.assign(bits=[bits_per_layer(r) for _, r in g.iterrows()])
    rows = []
    for dataset, (options, bits) in common_cells(g).items():
        d = g[(g.dataset == dataset) & (g.options == options) & (g.bits == bits)]
        d = d.sort_values(
            ["architecture", "n", "n_valid", "gap_worst"],
            ascending=[True, False, False, False],
            kind="mergesort",
        )
        for _, r in d.groupby("architecture", sort=True).head(1).iterrows():
            cell = f"{options}, {bits:g} bits x L"
            rows.append({**r.to_dict(), "cell": cell, "verdict": verdict(r)})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_invalid"] = ~out.valid
    out = out.sort_values(["dataset", "_invalid", "gap_worst", "architecture"], kind="mergesort")
    return out.drop(columns="_invalid").reset_index(drop=True)
