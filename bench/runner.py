"""``run_suite``: a suite's stages as Ray Tune experiments (the only module that imports Ray).

Plan: the teacher once; KD once per student; then, per (student, bit options, budget, mode), an
Optuna search (Ray Tune's ``OptunaSearch``) over delta/alpha/beta whose trials each train one pair
with the Accelerate-wrapped trainer and report every epoch. The best robust and detrimental pair of
each (student, options, budget) go through the analyses, and one record per such triple is written
to ``RUN/records.jsonl``.

Layout of a run folder ``RUN`` (``--out``, default ``runs/<suite name>``):
``suite.yaml`` (the resolved suite), ``tune/`` (Ray Tune's experiments and checkpoints: the storage
path), ``trials/`` (each trial's working checkpoint), ``artifacts/`` (the chosen teacher, f_N and
pairs), ``reports/`` (tables and figures), ``records.jsonl``, ``events.jsonl`` (starts, restores,
trial retries and failures with their reasons). Ray's temp dir is ``RUN/ray`` (or a
short path under /tmp when ``RUN`` is too long for Ray's sockets). Multi-node: ``RUN`` must be on a
filesystem every node sees (or give ``storage`` a URI Ray Tune supports).

Objective (say how the FP constraint enters): each epoch a trial reports
``score = drop - penalty * max(0, (acc(f_N) - fp_acc) - fp_tolerance)`` for a detrimental search and
``score = -drop - penalty * max(0, ...)`` for a robust one; Optuna maximises the last epoch's score.
A pair that buys its drop by losing FP accuracy is pushed down, not thrown away.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import yaml

from dptq.engine import (
    RunOptions,
    atomic_file,
    load_checkpoint,
    make_accelerator,
    seed_everything,
    write_atomic,
)
from dptq.models import QuantizableModel, create_model
from dptq.train import BlackBox, distill, train_pair, train_teacher

from .suite import Suite, SuiteError, parse_suite, to_plain


@dataclass(frozen=True)
class PairGroup:
    """One Optuna search: a student, a bit-option version, a budget and a mode."""

    student: str
    version: str
    options: tuple[int, ...]
    budget: int
    mode: str

    @property
    def key(self) -> str:
        return f"{_slug(self.student)}-{self.version}-{self.budget}"

    @property
    def name(self) -> str:
        return f"pair-{self.key}-{self.mode}"


def _slug(name: str) -> str:
    return name.replace(":", "_").replace(".", "_").replace("/", "_")


def kd_name(student: str) -> str:
    """The KD stage's Ray Tune experiment (and its checkpoint files') name for ``student``."""
    return f"kd-{_slug(student)}"


def num_layers(suite: Suite, student: str, num_classes: int) -> int:
    return QuantizableModel(create_model(student, num_classes), act=suite.act).num_layers


def plan(suite: Suite, num_classes: int) -> list[PairGroup]:
    """Every pair search of the suite; budgets checked (one line naming the student) before any work."""
    from dptq import knapsack

    groups = []
    for st in suite.students:
        L = num_layers(suite, st.name, num_classes)
        for version, options in suite.bit_options.items():
            budgets = (
                st.budgets.get(version)
                or st.budgets.get("*")
                or tuple(knapsack.budget_from_average(a, L) for a in suite.avg_bits)
            )
            for b in budgets:
                try:
                    knapsack.check_budget(options, b, L)
                except ValueError as e:
                    raise SuiteError(f"students[{st.name}] bit_options.{version}: {e}") from None
                groups += [
                    PairGroup(st.name, version, tuple(options), int(b), m) for m in suite.modes
                ]
    return groups


def describe_plan(suite: Suite, groups: list[PairGroup], run_dir: Path) -> str:
    n_trials = len(groups) * suite.search.num_samples
    res = suite.resources
    lines = [
        f"suite '{suite.name}' (hash {suite.digest()}, seed {suite.seed}) -> {run_dir}",
        f"  stage teacher: {suite.teacher.name}, {suite.teacher_stage.epochs} epochs, 1 trial",
        f"  stage kd: {len(suite.students)} trial(s), {suite.kd_stage.epochs} epochs each",
        f"  stage pairs: {len(groups)} searches x {suite.search.num_samples} samples = {n_trials} trials, "
        f"{suite.pair.epochs} epochs each",
    ]
    for g in groups:
        lines.append(f"    {g.name}: options {list(g.options)}, budget {g.budget}")
    lines.append(
        f"  resources per trial: {res.cpus:g} CPU, {res.gpus:g} GPU; retries {suite.retries}"
    )
    lines.append(f"  analyses: {', '.join(suite.analyses)}")
    return "\n".join(lines)


# --- trainables (run inside Ray workers) -----------------------------------------------------


TUNE_FILE = "state.pt"  # the stage checkpoint's name inside every Ray Tune checkpoint


def _report_epoch(ckpt_file: Path):
    """An engine callback that reports each epoch to Ray Tune with the stage checkpoint."""
    import ray
    from ray import tune

    node = ray.get_runtime_context().get_node_id()

    def callback(stage: str, epoch: int, result: dict):
        with tempfile.TemporaryDirectory() as d:
            shutil.copy2(ckpt_file, Path(d) / TUNE_FILE)
            metrics = {k: v for k, v in result.items() if isinstance(v, int | float)}
            tune.report({**metrics, "node_id": node}, checkpoint=tune.Checkpoint.from_directory(d))

    return callback


def _restore_from_tune(ckpt_file: Path) -> None:
    """On a retry, take the last checkpoint Ray Tune kept for this trial unless a newer one is here.

    The trial's own file (written every epoch, atomically) is at least as new as Ray Tune's copy
    when it exists; on a node that cannot see it (no shared filesystem) Ray Tune's copy is used.
    """
    from ray import tune

    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return
    with ckpt.as_directory() as d:
        theirs = load_checkpoint_epoch(Path(d) / TUNE_FILE)
        if ckpt_file.exists() and load_checkpoint_epoch(ckpt_file) >= theirs:
            return
        ckpt_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(d) / TUNE_FILE, ckpt_file)


def load_checkpoint_epoch(path: Path) -> int:
    """The epoch a trial's own checkpoint reached (-1 when it cannot be read: Ray Tune's wins)."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # unreadable own file: take Ray Tune's copy instead of failing the trial
        return -1


def trial_key(cfg: dict) -> str:
    """A pair trial's checkpoint name: its search and sampled values, not Ray Tune's trial id.

    A driver killed between a suggestion and Ray Tune's next experiment snapshot gets the same
    suggestion again after the restart (the searcher's state is restored with it); naming the
    file by the values lets that trial resume from the epochs it already trained.
    """
    import hashlib

    key = {k: cfg[k] for k in ("group", "delta", "alpha", "beta")}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _setup(cfg: dict):
    suite = parse_suite(cfg["suite"], "suite")
    data = suite.dataset.load()
    torch.set_num_threads(max(1, int(cfg.get("threads", 1))))
    return suite, data


def stage_trainable(cfg: dict) -> None:
    """Ray Tune trainable for the teacher or one student's KD."""
    suite, data = _setup(cfg)
    ckpt = Path(cfg["ckpt"])
    _restore_from_tune(ckpt)
    opts = RunOptions(
        seed=suite.seed, cpu=suite.resources.gpus == 0, progress=False, callback=_report_epoch(ckpt)
    )
    acc = make_accelerator(opts)
    if cfg["kind"] == "teacher":
        seed_everything(suite.seed)
        model = create_model(
            suite.teacher.name, data.num_classes, pretrained=suite.teacher.pretrained
        )
        train_teacher(model.to(acc.device), data, suite.teacher_stage, ckpt, opts, acc)
    else:
        teacher = create_model(suite.teacher.name, data.num_classes)
        teacher.load_state_dict(
            load_checkpoint(Path(cfg["teacher"]), "teacher")["modules"]["model"]
        )
        seed_everything(suite.seed + 1)
        student = create_model(cfg["student"], data.num_classes)
        distill(
            student.to(acc.device),
            BlackBox(teacher.to(acc.device)),
            data,
            suite.kd_stage,
            ckpt,
            opts,
            acc,
        )


def score(
    mode: str, drop: float, fp_acc: float, f_n_acc: float, tolerance: float, penalty: float
) -> float:
    """The search objective (module docstring): larger is better for both modes."""
    lost = max(0.0, (f_n_acc - fp_acc) - tolerance)
    return (drop if mode == "detrimental" else -drop) - penalty * lost


def load_f_n(suite: Suite, student: str, kd_file: Path, num_classes: int) -> QuantizableModel:
    net = create_model(student, num_classes)
    net.load_state_dict(load_checkpoint(kd_file, "kd")["modules"]["student"])
    return QuantizableModel(net.eval(), act=suite.act)


def pair_trainable(cfg: dict) -> None:
    """Ray Tune trainable for one pair (one Optuna sample of delta/alpha/beta)."""
    suite, data = _setup(cfg)
    ckpt = Path(cfg["trials_dir"]) / cfg["group"] / f"{trial_key(cfg)}.pt"
    _restore_from_tune(ckpt)
    pair_cfg = replace(
        suite.pair,
        mode=cfg["mode"],
        options=tuple(cfg["options"]),
        budget=cfg["budget"],
        delta=cfg["delta"],
        alpha=cfg["alpha"],
        beta=cfg["beta"],
    )
    f_n_acc, search = cfg["f_n_acc"], suite.search

    def report(stage: str, epoch: int, result: dict):
        result["score"] = score(
            cfg["mode"],
            result["drop"],
            result["fp_acc"],
            f_n_acc,
            search.fp_tolerance,
            search.penalty,
        )
        _report_epoch(ckpt)(stage, epoch, result)

    opts = RunOptions(
        seed=suite.seed, cpu=suite.resources.gpus == 0, progress=False, callback=report
    )
    acc = make_accelerator(opts)
    f_n = load_f_n(suite, cfg["student"], Path(cfg["kd"]), data.num_classes).to(acc.device)
    seed_everything(suite.seed + 2 + suite.modes.index(cfg["mode"]))
    train_pair(f_n, data, pair_cfg, ckpt, opts, acc, suite.policy, suite.policy_options)


# --- driver ---------------------------------------------------------------------------------


def _pythonpath() -> str:
    parts = [os.getcwd(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return os.pathsep.join(dict.fromkeys(parts))


def _init_ray(run_dir: Path, address: str | None, suite: Suite) -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        # a run on one machine talks over loopback only; Ray otherwise takes the machine's
        # outward address even for a local instance (read when Ray is first imported)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import optuna
    import ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if ray.is_initialized():
        return
    # workers import a suite's ``module:function`` models from where the command was run
    kwargs = dict(
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
        runtime_env={"env_vars": {"RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": _pythonpath()}},
    )
    if address:
        ray.init(address=address, **kwargs)
        return
    from ray._private import ray_constants

    # Ray was imported earlier in this process (tests, notebooks): the same switch, set directly
    ray_constants.ENABLE_RAY_CLUSTER = os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] != "0"
    tmp = run_dir / "ray"
    if len(str(tmp)) > 40:  # Ray's unix sockets live under the temp dir (~107 characters at most)
        tmp = Path(tempfile.gettempdir()) / f"dptq-ray-{suite.digest()}"
    ray.init(num_cpus=os.cpu_count(), _temp_dir=str(tmp), **kwargs)


def failure_reason(err) -> str:
    """One line saying why a trial failed: the trainer's own exception inside Ray's wrappers.

    Classified so a leaderboard reader sees the kind first: ``non-finite loss``, ``out of memory``
    (PyTorch's allocator on GPU or CPU, or Ray's memory monitor), ``worker or node died``, else
    the exception's type and first line.
    """
    cause = err
    while getattr(cause, "cause", None) not in (None, cause):  # RayTaskError -> the original
        cause = cause.cause
    name = type(cause).__name__
    text = str(cause).strip()
    if isinstance(cause, str):  # the text of Ray Tune's error file: its last failure
        text = text.split("Failure # ")[-1].partition("\n")[2].strip() or text
        name = "RayTaskError"
    if name in ("RayTaskError", "TuneError") or text.startswith("ray::"):
        # a wrapper's text: the last "SomeError: message" line of the remote traceback
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        tail = [ln for ln in lines if ":" in ln and ln.split(":")[0].isidentifier()]
        name, _, text = (tail[-1] if tail else lines[-1] if lines else name).partition(": ")
    msg = text.splitlines()[0].strip() if text else ""
    low = f"{name} {msg}".lower()
    if "outofmemory" in low or "out of memory" in low or "allocate" in low and "memory" in low:
        return f"out of memory: {name}: {msg}"
    if name == "FloatingPointError" or "loss is nan" in low or "loss is inf" in low:
        return f"non-finite loss: {msg}"
    lost = ("actordied", "actorunavailable", "nodedied", "workercrashed", "actor died")
    lost += ("is unavailable", "node died", "worker died", "connection reset by peer")
    if any(k in low for k in lost):
        return f"worker or node died: {name}: {msg}"[:300]
    return f"{name}: {msg}" if msg else name


def log_event(run_dir: Path, **event) -> None:
    """One line in ``RUN/events.jsonl`` (retries, failures, restarts: what the records cite)."""
    event["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(run_dir / "events.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(event, sort_keys=True) + "\n")


def read_events(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # a line cut off by a kill: the event is lost, nothing else is
    return events


class _Progress:
    """One line per finished trial (stage, trials done, best score, ETA); logs retries/failures."""

    def __init__(self, name: str, total: int, run_dir: Path):
        self.name, self.total, self.done, self.best, self.t0 = name, total, 0, None, time.time()
        self.run_dir = run_dir

    def __setstate__(self, state):  # restored with its experiment: the clock starts again
        self.__dict__.update(state, t0=time.time(), done=0)
        self.total = max(0, state["total"] - state["done"])

    def make(self):
        from ray import tune

        outer = self

        class Cb(tune.Callback):
            def on_trial_complete(self, iteration, trials, trial, **info):
                outer.finished(trial.last_result or {}, failed=False)

            def on_trial_error(self, iteration, trials, trial, **info):
                outer.event("failed", trial)
                outer.finished({}, failed=True)

            def on_trial_recover(self, iteration, trials, trial, **info):
                outer.event("retry", trial)

        return Cb()

    def event(self, kind: str, trial) -> None:
        try:
            err = Path(trial.error_file).read_text() if trial.error_file else None
        except OSError:
            err = None
        last = trial.last_result or {}
        reason = failure_reason(err) if err is not None else "unknown"
        log_event(
            self.run_dir,
            event=kind,
            experiment=self.name,
            trial=trial.trial_id,
            node=last.get("node_id"),
            epoch=last.get("epoch"),
            reason=reason,
        )
        print(f"  [{self.name}] trial {trial.trial_id} {kind}: {reason}", flush=True)

    def finished(self, result: dict, failed: bool):
        self.done += 1
        s = result.get("score")
        if s is not None and (self.best is None or s > self.best):
            self.best = s
        rate = (time.time() - self.t0) / self.done
        eta = rate * max(0, self.total - self.done)
        best = f", best score {self.best:.2f}" if self.best is not None else ""
        status = "FAILED" if failed else "done"
        print(
            f"  [{self.name}] trial {status}: {self.done}/{self.total}{best}, ETA {eta / 60:.1f} min",
            flush=True,
        )


def _tuner(
    name: str,
    trainable,
    param_space: dict,
    run_dir: Path,
    suite: Suite,
    num_samples: int = 1,
    search_alg=None,
    metric: str | None = None,
    scheduler=None,
):
    from ray import tune

    storage = str((run_dir / "tune").resolve())
    trainable = tune.with_resources(
        trainable, {"cpu": suite.resources.cpus, "gpu": suite.resources.gpus}
    )
    path = os.path.join(storage, name)
    if tune.Tuner.can_restore(path):
        log_event(run_dir, event="restore", experiment=name)
        # the callbacks (progress, event log) come back with the experiment
        return tune.Tuner.restore(path, trainable, resume_errored=True, param_space=param_space)
    run_config = tune.RunConfig(
        name=name,
        storage_path=storage,
        verbose=0,
        failure_config=tune.FailureConfig(max_failures=suite.retries),
        callbacks=[_Progress(name, num_samples, run_dir).make()],
    )
    tune_config = tune.TuneConfig(
        num_samples=num_samples,
        search_alg=search_alg,
        scheduler=scheduler,
        metric=metric,
        mode="max" if metric else None,
    )
    return tune.Tuner(
        trainable, param_space=param_space, tune_config=tune_config, run_config=run_config
    )


def _fit(tuner, name: str):
    grid = tuner.fit()
    errors = [r for r in grid if r.error is not None]
    return grid, errors


def _copy_final(result, dest: Path) -> Path:
    """The trial's last checkpoint to ``dest`` (copied beside it, then renamed: never half a file)."""
    with result.checkpoint.as_directory() as d, atomic_file(dest) as fh:
        with open(Path(d) / TUNE_FILE, "rb") as src:
            shutil.copyfileobj(src, fh)
    return dest


def run_suite(
    suite: Suite,
    run_dir: str | Path,
    address: str | None = None,
    fresh: bool = False,
    dry_run: bool = False,
    out=print,
) -> dict:
    """Run every stage of ``suite`` under ``run_dir``; returns {"records": [...], "failed": [...]}.

    Safe to call again on the same ``run_dir`` after any interruption: finished stages are kept
    (``artifacts/``), unfinished Ray Tune experiments are restored with their searcher, trials
    resume from their last epoch, and records already written are reused.
    """
    run_dir = Path(run_dir).resolve()
    downloads = bool(suite.dataset.options.get("download"))
    # a dry run never downloads; otherwise a missing dataset fails here, before Ray starts
    data = None if (dry_run and downloads) else suite.dataset.load()
    num_classes = data.num_classes if data is not None else 10  # L does not depend on it
    for s in suite.students:  # unknown architectures fail here, before Ray starts
        try:
            create_model(s.name, num_classes)
        except ValueError as e:
            raise SuiteError(f"students[{s.name}]: {e}") from None
    groups = plan(suite, num_classes)
    out(describe_plan(suite, groups, run_dir))
    if data is not None and data.skipped:
        shown = ", ".join(data.skipped[:10]) + (" ..." if len(data.skipped) > 10 else "")
        out(
            f"warning: {len(data.skipped)} unreadable image(s) left out (bad_images: skip): {shown}"
        )
    if dry_run:
        return {"records": [], "failed": [], "plan": groups}
    if fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    plain = to_plain(suite)
    saved = run_dir / "suite.yaml"
    if saved.exists() and yaml.safe_load(saved.read_text()) != plain:
        raise SuiteError(
            f"{run_dir}: holds a run of a different suite; use --fresh or another --out"
        )
    write_atomic(saved, yaml.safe_dump(plain, sort_keys=False))
    log_event(run_dir, event="start", suite=suite.name, suite_hash=suite.digest())
    threads = max(1, int(suite.resources.cpus))
    art, failed = run_dir / "artifacts", []

    def fit(name, trainable, param_space, **kw):
        _init_ray(run_dir, address, suite)  # only when some stage still has work to do
        return _fit(_tuner(name, trainable, param_space, run_dir, suite, **kw), name)

    teacher_file = art / "teacher.pt"
    if not teacher_file.exists():
        out("stage teacher")
        grid, errors = fit(
            "teacher",
            stage_trainable,
            {
                "kind": "teacher",
                "suite": plain,
                "ckpt": str(run_dir / "trials" / "teacher.pt"),
                "threads": threads,
            },
        )
        if errors:
            failed.append({"stage": "teacher", "error": failure_reason(errors[0].error)})
        else:
            _copy_final(grid[0], teacher_file)

    kd_files, f_n_acc = {}, {}
    for st in suite.students if teacher_file.exists() else []:
        kd_file = art / f"{kd_name(st.name)}.pt"
        if not kd_file.exists():
            out(f"stage kd {st.name}")
            grid, errors = fit(
                kd_name(st.name),
                stage_trainable,
                {
                    "kind": "kd",
                    "suite": plain,
                    "student": st.name,
                    "teacher": str(teacher_file),
                    "ckpt": str(run_dir / "trials" / f"{kd_name(st.name)}.pt"),
                    "threads": threads,
                },
            )
            if errors:
                failed.append({"stage": f"kd {st.name}", "error": failure_reason(errors[0].error)})
                continue
            _copy_final(grid[0], kd_file)
        kd_files[st.name] = kd_file
        f_n_acc[st.name] = load_checkpoint(kd_file, "kd")["history"][-1]["test_acc"]

    best: dict[str, dict] = {}
    for g in groups:
        if g.student not in kd_files:
            continue
        final = art / "pairs" / f"{g.name}.pt"
        summary = art / "pairs" / f"{g.name}.json"
        if final.exists() and summary.exists():
            best[g.name] = json.loads(summary.read_text())
            continue
        out(f"stage {g.name}")
        _init_ray(run_dir, address, suite)
        grid, errors = _search(
            g, suite, plain, run_dir, kd_files[g.student], f_n_acc[g.student], threads
        )
        failed += [
            {"stage": g.name, "trial": r.path, "error": failure_reason(r.error)} for r in errors
        ]
        ok = [r for r in grid if r.error is None and r.metrics and "score" in r.metrics]
        if not ok:
            continue
        # ties (common on tiny runs) go to the same trial every time: compare the sampled values
        top = max(
            ok,
            key=lambda r: (
                round(r.metrics["score"], 6),
                *(-r.config[k] for k in ("delta", "alpha", "beta")),
            ),
        )
        _copy_final(top, final)
        info = {
            "metrics": {k: v for k, v in top.metrics.items() if isinstance(v, int | float)},
            "config": {k: top.config[k] for k in ("delta", "alpha", "beta")},
            "trials": len(grid),
            "failed_trials": len(errors),
            "file": str(final),
        }
        write_atomic(summary, json.dumps(info, indent=1))  # marks the search done: last, whole
        best[g.name] = info

    from .records import build_records

    records = build_records(
        suite, groups, best, f_n_acc, kd_files, data, run_dir, failed, read_events(run_dir), out=out
    )
    return {"records": records, "failed": failed}


def _search(
    g: PairGroup,
    suite: Suite,
    plain: dict,
    run_dir: Path,
    kd_file: Path,
    f_n_acc: float,
    threads: int,
):
    from optuna.samplers import TPESampler
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    s = suite.search
    space, start = {}, {}
    for key in ("delta", "alpha", "beta"):
        rng = getattr(s, key)
        start[key] = getattr(suite.pair, key)
        if rng is not None:
            space[key] = (tune.loguniform if rng.log else tune.uniform)(rng.low, rng.high)
        else:
            space[key] = start[key]
    searched = [k for k in ("delta", "alpha", "beta") if getattr(s, k) is not None]
    search_alg = None
    if searched:
        search_alg = OptunaSearch(
            sampler=TPESampler(seed=suite.seed),
            points_to_evaluate=[{k: start[k] for k in searched}],
        )
    scheduler = (
        ASHAScheduler(time_attr="epoch", max_t=suite.pair.epochs, grace_period=1)
        if s.asha
        else None
    )
    param_space = {
        **space,
        "suite": plain,
        "group": g.name,
        "student": g.student,
        "mode": g.mode,
        "options": list(g.options),
        "budget": g.budget,
        "kd": str(kd_file),
        "f_n_acc": f_n_acc,
        "trials_dir": str(run_dir / "trials"),
        "threads": threads,
    }
    tuner = _tuner(
        g.name,
        pair_trainable,
        param_space,
        run_dir,
        suite,
        num_samples=s.num_samples if searched else 1,
        search_alg=search_alg,
        metric="score",
        scheduler=scheduler,
    )
    return _fit(tuner, g.name)


def main_run(
    path: str,
    out_dir: str | None,
    address: str | None,
    fresh: bool,
    dry_run: bool,
    leaderboard: str = "leaderboard",
) -> int:
    """``python -m bench run``: load, validate, run, add the rows to the leaderboard.

    Exit 0: every trial finished; 1: some failed (each named on stderr, and a failed entry on the
    leaderboard); 2: bad input (one line: file, what is wrong, what to do; nothing written).
    """
    from dptq.data import DataError
    from dptq.engine import CheckpointError

    from .faults import failpoint
    from .leaderboard import load_records, regenerate, submit
    from .records import RecordError
    from .suite import load_suite

    board = Path(leaderboard) / "records.jsonl" if leaderboard else None
    try:
        suite = load_suite(path)
        if board is not None and not dry_run:
            load_records(board)  # a broken leaderboard stops the run before any work
        run_dir = Path(out_dir or Path("runs") / suite.name)
        res = run_suite(suite, run_dir, address=address, fresh=fresh, dry_run=dry_run)
        if board is not None and res["records"]:
            added = submit(run_dir / "records.jsonl", board)
            print(f"leaderboard: {added} new record(s) in {board}")
            failpoint("leaderboard:appended")
            regenerate(board)
    except (SuiteError, FileNotFoundError, CheckpointError, RecordError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for f in res["failed"]:
        print(f"FAILED {f['stage']}: {f['error']}", file=sys.stderr)
    return 1 if res["failed"] else 0
