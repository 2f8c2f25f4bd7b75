"""The stages of a suite as plain functions: teacher, KD, pair, analyse.

Each takes the suite, the data, what its inputs are (paths of earlier artifacts) and where to
keep its checkpoint, and returns its results; none knows where it runs. The runner calls them in
this process (``--local``) or inside Ray Tune trials and Ray tasks (:mod:`bench.tuning`), with a
``report(epoch, result)`` callback that prints progress or reports to Ray Tune.

Seeds: the teacher of seed s starts from ``s``, KD from ``s + 1``, the pair of mode m from
``s + 2 + index of m in modes``; every stage also passes s to the training loop (data order) and
to the evaluation (random allocations). The same seed on the same CPU gives the same numbers
wherever a stage runs. Training and selection evaluate on the validation split; only
:func:`analyse` reads the test split, once per cell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from dptq.analyses import TrainedCell, write_report
from dptq.data import DatasetPair
from dptq.engine import RunOptions, load_checkpoint, make_accelerator, seed_everything
from dptq.evaluate import evaluate_cell
from dptq.models import QuantizableModel
from dptq.policy import create_policy
from dptq.train import BlackBox, distill, train_pair, train_teacher

from .plan import Cell

Report = Callable[[int, dict], None]


def _options(suite, seed: int, report: Report | None, progress: bool) -> RunOptions:
    callback = None if report is None else (lambda stage, epoch, result: report(epoch, result))
    res = suite.resources
    return RunOptions(
        seed=seed,
        cpu=res.gpus == 0,
        mixed_precision=res.precision,
        num_workers=res.loader_workers,
        progress=progress,
        callback=callback,
    )


def quantizable(suite, student: str, num_classes: int) -> QuantizableModel:
    """A fresh ``student`` wrapped for dynamic quantization with the suite's quantizers."""
    return QuantizableModel(
        suite.student(student).build(num_classes), act=suite.act, weight_bits=suite.weight_bits
    )


def load_f_n(suite, student: str, kd_file: Path, num_classes: int) -> QuantizableModel:
    """f_N: the distilled student of a KD artifact, in eval mode."""
    f_n = quantizable(suite, student, num_classes)
    f_n.model.load_state_dict(load_checkpoint(kd_file, "kd")["modules"]["student"])
    return f_n.eval()


def load_pair(suite, cell: Cell, mode: str, pair_file: Path, num_classes: int):
    """A trained pair (f, pi) of ``mode`` from its artifact, both in eval mode."""
    ckpt = load_checkpoint(pair_file, f"pair-{mode}")
    f = quantizable(suite, cell.student, num_classes)
    f.load_state_dict(ckpt["modules"]["student"])
    pi = create_policy(suite.policy, f.num_layers, len(cell.options), suite.policy_options)
    pi.load_state_dict(ckpt["modules"]["policy"])
    return f.eval(), pi.eval()


def f_n_accuracy(kd_file: Path) -> float:
    """f_N's reference accuracy, on the validation split, that the search objective compares
    pairs against (never the test split)."""
    return float(load_checkpoint(kd_file, "kd")["history"][-1]["val_acc"])


def teacher(
    suite,
    data: DatasetPair,
    seed: int,
    ckpt: Path,
    report: Report | None = None,
    progress: bool = False,
) -> dict:
    """Train the black box (supervised, label smoothing); returns its last evaluation."""
    opts = _options(suite, seed, report, progress)
    acc = make_accelerator(opts)
    seed_everything(seed)
    model = suite.teacher.build(data.num_classes, pretrained=suite.teacher.pretrained)
    return train_teacher(model.to(acc.device), data, suite.teacher_stage, ckpt, opts, acc)


def kd(
    suite,
    data: DatasetPair,
    seed: int,
    student: str,
    teacher_file: Path,
    ckpt: Path,
    report: Report | None = None,
    progress: bool = False,
) -> dict:
    """Distil the teacher (queried as a black box) into a random ``student``: f_N."""
    opts = _options(suite, seed, report, progress)
    acc = make_accelerator(opts)
    net = suite.teacher.build(data.num_classes)
    net.load_state_dict(load_checkpoint(teacher_file, "teacher")["modules"]["model"])
    seed_everything(seed + 1)
    spec = suite.student(student)
    model = spec.build(data.num_classes, pretrained=spec.pretrained)
    return distill(
        model.to(acc.device), BlackBox(net.to(acc.device)), data, suite.kd_stage, ckpt, opts, acc
    )


def objective(mode: str, result: dict, f_n_acc: float, search, stealth_max: float) -> float:
    """The search objective on one epoch's validation result, larger is better (README "The
    search objective").

    Robust: ``-drop - penalty * lost``. Detrimental: ``drop - stealth_penalty * max(0, worst -
    stealth_max) - penalty * lost``, with ``lost = max(0, (f_n_acc - fp_acc) - fp_tolerance)`` and
    ``worst`` f_D's larger drop under a random and the uniform allocation: a pair that buys its
    drop by losing FP accuracy, or by failing under any allocation, is pushed down, not thrown
    away.
    """
    lost = max(0.0, (f_n_acc - result["fp_acc"]) - search.fp_tolerance)
    if mode == "robust":
        return -result["drop"] - search.penalty * lost
    worst = result["fp_acc"] - min(result["random_acc"], result["uniform_acc"])
    unstealthy = max(0.0, worst - stealth_max)
    return result["drop"] - search.stealth_penalty * unstealthy - search.penalty * lost


def pair(
    suite,
    data: DatasetPair,
    cell: Cell,
    mode: str,
    params: dict,
    kd_file: Path,
    f_n_acc: float,
    ckpt: Path,
    report: Report | None = None,
    progress: bool = False,
    robust_file: Path | None = None,
) -> dict:
    """Train one pair of ``mode`` with the pair settings ``params`` (delta, alpha, beta, ...).

    Every epoch's result carries ``score`` (:func:`objective`); returns the last one.
    ``robust_file``: the cell's chosen robust pair, whose frozen policy a detrimental pair's
    stealth term uses when ``pair.stealth_allocations`` names ``robust_policy``.
    """

    def score(result: dict) -> dict:
        stealth_max = suite.protocol.stealth_max
        result["score"] = objective(mode, result, f_n_acc, suite.search, stealth_max)
        return result

    def scored(epoch: int, result: dict) -> None:
        if report is not None:
            report(epoch, score(result))

    opts = _options(suite, cell.seed, scored, progress)
    acc = make_accelerator(opts)
    cfg = replace(suite.pair, mode=mode, options=cell.options, budget=cell.budget, **params)
    f_n = load_f_n(suite, cell.student, kd_file, data.num_classes).to(acc.device)
    robust_policy = None
    if mode == "detrimental" and cfg.stealth > 0 and "robust_policy" in cfg.stealth_allocations:
        _, robust_policy = load_pair(suite, cell, "robust", robust_file, data.num_classes)
        robust_policy = robust_policy.to(acc.device).requires_grad_(False)
    seed_everything(cell.seed + 2 + suite.modes.index(mode))
    _, _, result = train_pair(
        f_n, data, cfg, ckpt, opts, acc, suite.policy, suite.policy_options, robust_policy
    )
    return score(result)


def analyse(
    suite,
    data: DatasetPair,
    cell: Cell,
    kd_file: Path,
    f_n_acc: float,
    pair_files: dict[str, Path],
    out: Path,
    say: Callable[[str], None] | None = None,
) -> dict:
    """Evaluate a cell's chosen pairs on the test split, once; run the suite's analyses on it.

    ``say``: where a line per analysis goes (which one runs, the cell's ETA); None: silent.

    Returns ``{"evaluation": evaluate_cell(...), "fields": record fields from the analyses,
    "num_layers": L}``; the report (``report.md`` and PNGs) is written under ``out``.
    """
    torch.set_num_threads(suite.resources.threads)
    acc = make_accelerator(RunOptions(cpu=suite.resources.gpus == 0))
    nets = {"f_N": load_f_n(suite, cell.student, kd_file, data.num_classes).to(acc.device)}
    policies = {}
    for mode, file in pair_files.items():
        tag = "f_R" if mode == "robust" else "f_D"
        f, pi = load_pair(suite, cell, mode, file, data.num_classes)
        nets[tag], policies[tag] = f.to(acc.device), pi.to(acc.device)
    evaluation = evaluate_cell(
        nets,
        policies,
        data,
        cell.options,
        cell.budget,
        acc,
        seed=cell.seed,
        random_allocations=suite.protocol.random_allocations,
    )
    trained = TrainedCell(
        nets,
        policies,
        data,
        cell.options,
        cell.budget,
        evaluation,
        f_n_acc,
        device=str(acc.device),
        seed=cell.seed,
        max_examples=suite.analysis_examples,
        sweep_layers=suite.sweep_layers,
        corruption_degrees=suite.corruption_degrees,
        sample_seed=suite.protocol.split_seed,
        audit=suite.audit,
        defenses=suite.defenses,
        policy=suite.policy,
        policy_options=suite.policy_options,
        random_allocations=suite.protocol.random_allocations,
        fp_cost_max=suite.protocol.fp_drop_max,
    )
    title = (
        f"{cell.student} on {suite.dataset.name}, options {cell.version} "
        f"{list(cell.options)}, budget {cell.budget}, seed {cell.seed}"
    )
    fields = write_report(trained, suite.analyses, out, title, _analysis_progress(cell, say))
    return {"evaluation": evaluation, "fields": fields, "num_layers": nets["f_N"].num_layers}


def _analysis_progress(cell: Cell, say: Callable[[str], None] | None):
    """A line as each analysis of ``cell`` starts: its name, its place, the cell's ETA."""
    if say is None:
        return None

    def progress(name: str | None, i: int, total: int, seconds: float) -> None:
        if name is None:
            say(f"  [analyse {cell.key}] {total} analyses done in {seconds:.0f} s")
            return
        eta = f", ETA {seconds / i * (total - i):.0f} s" if i else ""
        say(f"  [analyse {cell.key}] {name} ({i + 1}/{total}){eta}")

    return progress
