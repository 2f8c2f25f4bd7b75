"""Speed benchmarks (``python -m bench perf WHICH``): JSON + Markdown under ``leaderboard/perf/``.

Each benchmark is a module ``bench.perf_<which>`` with ``bench_<which>(quick)`` and
``markdown_<which>(res)``: ``core`` (the knapsack, its share of a pair step, the quantized pass's
overhead), ``train`` (a pair step against a plain step, with its profile), ``corruptions``
(batched vs per-image PIL), ``int8`` (fake quantization vs real int8 kernels), ``gpu`` (the GPU
checks). Timings interleave the variants being compared and report medians, so that load on a
shared machine hits both alike. Numbers are for the machine named in the output.
"""

from __future__ import annotations

import importlib
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..records.machine import hardware

BENCHMARKS = ("core", "train", "corruptions", "int8", "gpu")


def _median_times(fns: dict[str, Callable[[], object]], reps: int, warmup: int = 2) -> dict:
    """Median seconds per call of each fn, the fns run in turn ``reps`` times (interleaved)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def _machine() -> dict:
    """A record's :func:`bench.records.machine.hardware`, plus the versions a timing depends on."""
    return hardware() | {
        "torch": torch.__version__,
        "device": "cpu",
        "python": platform.python_version(),
    }


def header(res: dict, which: str) -> list[str]:
    """The first lines of a benchmark's Markdown: what ran, on which machine."""
    m = res["machine"]
    return [
        f"# `python -m bench perf {which}`",
        "",
        f"Machine: {m['cores']} cores ({m.get('cpu_model', m.get('model', m['cpu']))}, "
        f"{m.get('capability', '?')}), torch {m['torch']} on {m['device']}, "
        f"{m.get('threads', m.get('torch_threads'))} threads. Medians of "
        "interleaved repetitions.",
        "",
    ]


PER_MACHINE_KIND = ("train",)  # kept once per vector extension: train-avx2.md, train-avx512.md


def result_stem(which: str, machine: dict) -> str:
    """The file name (without suffix) of a benchmark's result on ``machine``: ``<which>``, or for
    the benchmarks kept per machine kind ``<which>-<vector extension>`` (``train-avx512``)."""
    kind = str(machine.get("capability") or "").lower()
    return f"{which}-{kind}" if which in PER_MACHINE_KIND and kind else which


def run_perf(which: str, out_dir: str = "leaderboard/perf", quick: bool = False) -> dict:
    """Run benchmark ``which`` and write ``<out_dir>/<stem>.json`` and ``.md``
    (:func:`result_stem`)."""
    if which not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {which!r}; known: {', '.join(BENCHMARKS)}")
    res = {"benchmark": which, "machine": _machine(), "quick": quick}
    mod = importlib.import_module(f".{which}", __package__)  # torch.ao / CUDA only if asked
    res[which] = getattr(mod, f"bench_{which}")(quick)
    md = getattr(mod, f"markdown_{which}")(res)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = result_stem(which, res["machine"])
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / f"{stem}.md").write_text(md)
    print(md)
    return res
