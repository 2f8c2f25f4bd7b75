"""Complete, consistent schema-3 records for the leaderboard tests (as a run would write them),
built from counts on 1000 test examples, with the per-example files that prove them."""

from __future__ import annotations

import hashlib
from pathlib import Path

from bench.names import cell_key
from bench.records.protocol import resolve
from bench.records.record import SCHEMA_VERSION, per_example_bytes, per_example_rel, report_rel
from bench.records.verify import make
from dptq.io import write_atomic

N = 1000
K = 8
PROTOCOL = {
    "val_fraction": 0.15,
    "split_seed": 0,
    "fp_match_max": 2.0,
    "fp_drop_max": 2.0,
    "min_f_n_acc": None,
    "stealth_max": 5.0,
    "random_allocations": K,
    "allow_degenerate": False,
}


def _c(points: float) -> int:
    """Examples of N that ``points`` percent are (the fixtures use multiples of 0.1)."""
    c = round(points * N / 100)
    assert abs(c - points * N / 100) < 1e-6, points
    return c


def counts(gap=50.0, f_d_fp=98.8, hidden=20.0) -> dict:
    """f_N 99.0, f_R FP 99.0 and drop 0.5, f_D FP ``f_d_fp`` and drop ``gap`` + 0.5; f_D's drop
    under pi_R is ``hidden`` below its own drop, 1.0 under the uniform and sampled allocations."""
    d_fp, own = _c(f_d_fp), _c(gap + 0.5)
    other = max(own - _c(hidden), d_fp - N)  # its count stays within 0..N
    return {
        "f_N": {"FP": 990, "pi_R": 989, "pi_D": 988, "uniform": 987, "random": [987] * K}
        | {"heldout": [986] * K},
        "f_R": {"FP": 990, "pi_R": 985, "pi_D": 984, "uniform": 986, "random": [985] * K}
        | {"heldout": [985] * K},
        "f_D": {"FP": d_fp, "pi_R": d_fp - other, "pi_D": d_fp - own, "uniform": d_fp - 10}
        | {"random": [d_fp - 10] * K, "heldout": [d_fp - 10] * K},
    }


def per_example_of(ev: dict) -> dict:
    """Per-example vectors with the given counts (the first c examples right)."""

    def bits(c: int) -> str:
        return "1" * c + "0" * (N - c)

    out = {}
    for net, by in ev.items():
        out[net] = {
            a: [bits(c) for c in v] if isinstance(v, list) else bits(v) for a, v in by.items()
        }
    return {"total": N, "evaluation": out}


def record(
    arch="resnet18",
    budget=80,
    gap=50.0,
    error=None,
    dataset="digits",
    suite="s",
    seed=0,
    f_d_fp=98.8,
    date="2026-11-23T00:00:00+00:00",
    recipe="dptq-v1",
    hidden=20.0,
    version="I",
):
    """A record (:class:`bench.records.record.Record`) of the given gap and verdict inputs."""
    rid = f"{suite}/abcdef012345/{cell_key(arch, version, budget, seed)}"
    base = {
        "schema_version": SCHEMA_VERSION,
        "id": rid if error is None else f"{rid}/failed-0123abcd",
        "suite": suite,
        "suite_hash": "abcdef012345",
        "seed": seed,
        "dataset": dataset,
        "num_classes": 10,
        "architecture": arch,
        "bit_options": version,
        "options": [3, 4, 5],
        "budget": budget,
        "recipe": recipe,
        "error": error,
        "date": date,
        "git_commit": "0" * 40,
        "python": "3.11.7",
        "versions": {"torch": "2.14.1"},
        "hardware": {"cores": 2},
        "retries": [],
        "skipped_images": [],
    }
    if error is not None:
        return make(base)
    ev = counts(gap, f_d_fp, hidden)
    pe = per_example_of(ev)
    d_fp, d_q = ev["f_D"]["FP"], ev["f_D"]["pi_D"]
    data = {
        **base,
        "selected_on": "val",
        "recipe_deviations": {},
        "searched": [],
        "protocol": resolve(PROTOCOL, 10),
        "degenerate": False,
        "allocations_log10": 10.8,
        "num_layers": 20,
        "f_n_val_acc": 98.5,
        "evaluation": {"split": "test", "total": N, **ev},
        "analyses": {"transitory": {"count": max(0, d_fp - d_q), "both_correct": d_fp, "total": N}},
        "best": {"robust": {"delta": 2.0, "alpha": 0.5, "beta": 1.0}},
        "trials": {"robust": 1, "detrimental": 1},
        "per_example": per_example_rel(rid),
        "per_example_sha256": hashlib.sha256(per_example_bytes(pe)).hexdigest(),
        "report": report_rel(rid),
    }
    return make(data)


def closed_suite(suite="closed", arch="resnet18"):
    """A closed-division suite of one student (the current attack, digits' preset)."""
    from bench.config.suite import parse_suite

    return parse_suite({"name": suite, "division": "closed", "students": [arch]}, "closed.yaml")


def closed_record(
    arch="resnet18",
    gap=50.0,
    seed=0,
    suite="closed",
    f_d_fp=98.8,
    trials=None,
    date="2026-12-07T00:00:00+00:00",
    **changes,
):
    """A closed-division record as a clean run of :func:`closed_suite` would write it: its suite
    text, protocol v3, and every configuration of the portfolio with validation figures
    (``trials``: ``{name: (val_drop, val_fp_acc) or None (failed)}`` per detrimental
    configuration; default: each at f_N's accuracy, the first with the largest drop), the
    winners recomputed by the protocol's selection. ``changes``: fields set afterwards (a
    forgery)."""
    from bench.config.suite import suite_text
    from bench.config.typed_yaml import to_plain
    from bench.records.protocol import selection_score

    st = closed_suite(suite, arch)
    digest = st.digest()
    budget, f_n_val = 130, 98.5
    rid = f"{suite}/{digest}/{cell_key(arch, 'II', budget, seed)}"
    rules = resolve(to_plain(st.protocol), 10)
    names = {m: [c.name for c in st.search.configurations(m)] for m in ("robust", "detrimental")}
    given = trials or {n: (gap - i, f_n_val) for i, n in enumerate(names["detrimental"])}
    given = {"robust": {names["robust"][0]: (0.5, f_n_val)}, "detrimental": given}

    class _Rules:  # selection_score reads these two
        fp_drop_max, select_margin = rules["fp_drop_max"], rules["select_margin"]

    searches, winners = {}, {}
    for mode, by in given.items():
        rows, best = [], None
        for name in names[mode]:
            figures = by.get(name)
            if figures is None:
                rows.append(
                    {
                        "config": {},
                        "score": None,
                        "epochs": None,
                        "seconds": None,
                        "failed": True,
                        "configuration": name,
                    }
                )
                continue
            score = selection_score(mode, figures[0], figures[1], f_n_val, _Rules)
            rows.append(
                {
                    "config": {},
                    "score": score,
                    "epochs": 12,
                    "seconds": 10.0,
                    "failed": False,
                    "configuration": name,
                    "val_drop": figures[0],
                    "val_fp_acc": figures[1],
                }
            )
            if best is None or round(score, 6) > best[0]:
                best = (round(score, 6), name)
        searches[mode], winners[mode] = rows, best[1]
    ev = counts(gap, f_d_fp, 20.0)
    pe = per_example_of(ev)
    data = {
        "schema_version": SCHEMA_VERSION,
        "id": rid,
        "suite": suite,
        "suite_hash": digest,
        "seed": seed,
        "dataset": "digits",
        "num_classes": 10,
        "architecture": arch,
        "bit_options": "II",
        "options": [4, 5, 6, 7, 8, 9, 10],
        "budget": budget,
        "recipe": "dptq-v1",
        "division": "closed",
        "attack": st.attack,
        "error": None,
        "date": date,
        "git_commit": "0" * 40,
        "git_dirty": False,
        "python": "3.11.7",
        "versions": {"torch": "2.14.1"},
        "hardware": {"cores": 2},
        "suite_text": suite_text(st),
        "selected_on": "val",
        "recipe_deviations": {},
        "searched": [],
        "protocol": rules,
        "degenerate": False,
        "allocations_log10": 10.8,
        "num_layers": 20,
        "f_n_val_acc": f_n_val,
        "evaluation": {"split": "test", "total": N, **ev},
        "analyses": {},
        "best": {"robust": {}, "detrimental": {}},
        "configuration": winners,
        "trials": {m: len(r) for m, r in searches.items()},
        "stage_seconds": {"teacher": 10.0, "kd": 100.0, "robust": 50.0, "detrimental": 200.0},
        "searches": searches,
        "per_example": per_example_rel(rid),
        "per_example_sha256": hashlib.sha256(per_example_bytes(pe)).hexdigest(),
        "report": report_rel(rid),
    }
    return make({**data, **changes})


def per_example(rec) -> dict:
    """The per-example file that proves ``rec``'s counts."""
    ev = rec.evaluation
    return per_example_of({n: getattr(ev, n).__dict__ for n in ("f_N", "f_R", "f_D")})


def source(folder: Path, records: list) -> Path:
    """A run folder holding the per-example files and a one-file report of ``records``."""
    for rec in records:
        if rec.error is None:
            write_atomic(folder / rec.per_example, per_example_bytes(per_example(rec)))
            report = folder / Path(rec.report).parent
            report.mkdir(parents=True, exist_ok=True)
            (report / "report.md").write_text(f"# {rec.id}\n")
            (report / "report.html").write_text(f"<h1>{rec.id}</h1>\n")
    return folder


def changed(rec, **nets):
    """``rec`` with some of its counts replaced (``f_D={"FP": 950}``), re-proved: what a run
    with those counts would have written."""
    from bench.records.record import DERIVED

    data = {k: v for k, v in rec.to_json().items() if k not in DERIVED}
    for net, by in nets.items():
        data["evaluation"][net] = {**data["evaluation"][net], **by}
    ev = {n: data["evaluation"][n] for n in ("f_N", "f_R", "f_D")}
    pe = per_example_of(ev)
    data["per_example_sha256"] = hashlib.sha256(per_example_bytes(pe)).hexdigest()
    return make(data)


def sample_records() -> list:
    return [
        record("resnet18", 80, 58.0),
        record("regnetx_016", 236, 12.5),
        record("mobilenetv4_conv_medium", 308, 31.0),
        record("resnet34", 80, error="trial failed: loss is nan at epoch 2"),
        record("resnet18", 80, 3.0, dataset="cifar10", suite="c"),
    ]


def board_with(tmp_path: Path, records, name="board") -> Path:
    """A board holding ``records`` (added from a run folder with their files)."""
    from bench.records.store import add

    src = source(tmp_path / f"{name}-src", records)
    add(records, tmp_path / name, source=src)
    return tmp_path / name
