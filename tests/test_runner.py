"""The suite runner through real Ray Tune and Optuna on the CPU, and in-process (``--local``):
end to end, equal records both ways, resume, two nodes."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

from bench.__main__ import main
from bench.config.suite import SuiteError, load_suite, parse_suite
from bench.executors.events import read_events
from bench.executors.ray.executor import RayExecutor
from bench.names import Layout
from bench.pipeline import plan
from bench.pipeline.plan import matching_cells
from bench.pipeline.run import run_suite
from bench.records import store
from dptq.engine import load_checkpoint
from tests.support.helpers import tiny_suite, with_change, write_suite

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "suites" / "tiny.yaml"
NET = "tests.support.nets:small_net"
VOLATILE = ("date", "report", "retries", "git_commit", "git_dirty", "stage_seconds", "searches")
MODES = ("robust", "detrimental")


@pytest.mark.slow
def test_three_stages_end_to_end(tmp_path):
    suite = tiny_suite()
    res = run_suite(suite, tmp_path, local=True)
    layout = Layout(tmp_path.resolve())
    [cell] = plan.cells(suite, 10)
    assert plan.count_layers(NET, 10) == 3 and cell.budget == 4 * 3  # avg 4 bits x L
    files = [layout.artifact(name) for name in cell.stages()]
    for f in files:
        assert f is not None and f.exists(), f
    assert len(list(layout.trials.rglob("*.pt"))) == 4  # one checkpoint per trial, no copies
    hist = load_checkpoint(files[0], "teacher")["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]  # the teacher learns
    [rec] = res.records
    assert rec.error is None and rec.budget == 12 and rec.num_layers == 3
    pe = json.loads((tmp_path / rec.per_example).read_text())
    assert pe["total"] == 40 and set(pe["evaluation"]) == {"f_N", "f_R", "f_D"}
    for by in pe["evaluation"].values():  # every test example, under every allocation
        assert set(by) == {"FP", "pi_R", "pi_D", "uniform", "random", "heldout"}
        assert len(by["random"]) == len(by["heldout"]) == 8
        assert all(len(v) == 40 for v in [by["FP"], *by["random"]])
    assert rec.f_d_drop == pytest.approx(rec.f_d_fp_acc - rec.f_d_q_acc, abs=1e-12)
    assert rec.selected_on == "val" and len(rec.evaluation.f_D.random) == 8
    # a second call finds every stage complete and gives the same record without training
    stamps = {p: p.stat().st_mtime_ns for p in layout.trials.rglob("*.pt")}
    again = run_suite(suite, tmp_path, local=True)
    assert again.records[0].gap == rec.gap
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


@pytest.mark.slow
def test_select_epoch_best_ends_each_pair_on_its_best_validation_epoch(tmp_path):
    """``search.select_epoch: best``: each pair's score is the best of its epochs' objectives
    (recomputed here from the checkpoint's history), the record's trial row names that epoch
    (None when it is the last) and the checkpoint holds its weights' evaluation."""
    from bench.pipeline.stages import objective

    suite = tiny_suite(**{"search": {"num_samples": 1, "select_epoch": "best"}, "pair.epochs": 4})
    [rec] = run_suite(suite, tmp_path, local=True).records
    layout = Layout(tmp_path.resolve())
    [cell] = plan.cells(suite, 10)
    f_n_acc = json.loads(layout.summary(plan.kd_name(suite.students[0].name, 0)).read_text())
    f_n_acc = f_n_acc["metrics"]["val_acc"]
    for mode in MODES:
        ckpt = load_checkpoint(layout.artifact(cell.search(mode)), f"pair-{mode}")
        scores = [
            objective(mode, h, f_n_acc, suite.search, suite.protocol) for h in ckpt["history"]
        ]
        best = max(range(4), key=lambda e: (scores[e], -e)) + 1  # the earliest of a tie
        [row] = rec.searches[mode]
        assert row.score == pytest.approx(scores[best - 1]) and row.epochs == 4
        assert row.selected_epoch == (None if best == 4 else best)
        assert ckpt["best"]["epoch"] == best
        for k, v in ckpt["modules"]["student"].items():
            torch.testing.assert_close(v, ckpt["best"]["modules"]["student"][k], rtol=0, atol=0)


@pytest.mark.slow
def test_a_floor_barred_detrimental_policy_never_floors_its_layers_in_training_or_analyses(
    tmp_path,
):
    """``pair.floor_barred``: the trained pi_D, as the analyses load it, puts no test example's
    barred layer at the floor; pi_R, trained without the bar, may; the record keeps the suite."""
    from bench.pipeline.stages import load_pair
    from dptq.evaluate import allocations, own_policy_bits

    suite = tiny_suite(**{"pair.floor_barred": ["6"], "analyses": ["pair_scores"]})
    [rec] = run_suite(suite, tmp_path, local=True).records
    assert rec.error is None and "floor_barred" in rec.suite_text
    layout = Layout(tmp_path.resolve())
    [cell] = plan.cells(suite, 10)
    data = suite.dataset.load(suite.protocol)
    floors, pis = {}, {}
    for mode in MODES:
        _, pi = pis[mode] = load_pair(suite, cell, mode, layout.artifact(cell.search(mode)), 10)
        table = allocations(own_policy_bits(pi, cell.options, cell.budget), data, "cpu")
        assert (table.sum(1) == cell.budget).all()
        floors[mode] = table.eq(min(cell.options)).float().mean(0)
    assert floors["detrimental"][1] == 0  # layer "6" of tests.support.nets.small_net: (3, 6, 10)
    assert pis["detrimental"][1].floor_barred == (1,)
    assert getattr(pis["robust"][1], "floor_barred", None) is None  # pi_R: no bar


def test_bad_model_budget_and_dataset_fail_before_training(tmp_path):
    with pytest.raises(SuiteError, match="unknown timm model 'resnet_typo'"):
        run_suite(tiny_suite(students=["resnet_typo"]), tmp_path / "a", local=True)
    with pytest.raises(SuiteError, match="budget 100 is outside"):
        suite = tiny_suite(students=[{"name": NET, "budgets": [100]}])
        run_suite(suite, tmp_path / "b", local=True)
    missing = {"name": "imagefolder", "options": {"root": str(tmp_path / "none")}}
    with pytest.raises(FileNotFoundError, match="none"):
        run_suite(tiny_suite(dataset=missing), tmp_path / "c", local=True)
    assert not any((tmp_path / d).exists() for d in "abc")  # nothing written


@pytest.fixture(scope="module")
def ray_run(tmp_path_factory):
    """The tiny suite once through Ray Tune (shared by the tests below)."""
    run_dir = tmp_path_factory.mktemp("ray") / "run"
    res = run_suite(load_suite(TINY), run_dir)
    yield run_dir, res
    import ray

    ray.shutdown()


def _cell():
    [cell] = plan.cells(load_suite(TINY), 10)
    return cell


def _trial_dirs(run_dir: Path, experiment: str) -> list[Path]:
    return [
        p
        for p in (run_dir / "tune" / experiment).iterdir()
        if p.is_dir() and p.name.startswith("_trainable")
    ]


def _numbers(records):
    return [{k: v for k, v in r.to_json().items() if k not in VOLATILE} for r in records]


@pytest.mark.ray
@pytest.mark.slow
def test_tiny_suite_end_to_end(ray_run):
    run_dir, res = ray_run
    assert not res.failed
    [rec] = res.records
    assert rec.error is None and rec.trials == {"robust": 2, "detrimental": 2}
    # the tiny suite learns: its rows are real rows (whether FP match stays within 2 points on
    # its 100 test images depends on the CPU's float arithmetic: tests/suites/tiny.yaml)
    assert rec.f_n_acc >= 50 and min(rec.f_r_fp_acc, rec.f_d_fp_acc) >= 40, rec
    assert rec.valid or all("FP" in r for r in rec.invalid_reasons), rec.invalid_reasons
    assert set(rec.best["robust"]) == {"delta", "alpha", "beta", "stealth"}
    report = (run_dir / rec.report).parent
    for f in ("report.md", "transitory.png", "cross_policy.png", "histograms.png"):
        assert (report / f).exists(), f
    assert (run_dir / rec.per_example).is_file()
    assert [r.id for r in store.load(run_dir)] == [rec.id]
    # what a reader needs to trust and rerun it: the suite itself, each stage's wall time, every
    # trial of both searches (the winner among them), the split sizes
    assert parse_suite(yaml.safe_load(rec.suite_text)).digest() == rec.suite_hash
    assert set(rec.stage_seconds) == {"teacher", "kd", "robust", "detrimental", "analyses"}
    assert all(v > 0 for v in rec.stage_seconds.values())
    for mode in ("robust", "detrimental"):
        rows = rec.searches[mode]
        assert len(rows) == 2 and not any(r.failed for r in rows)
        assert rec.best[mode] in [r.config for r in rows]
        assert rec.stage_seconds[mode] == pytest.approx(sum(r.seconds for r in rows), abs=0.02)
    assert rec.split_sizes["test"] == rec.evaluation.total and rec.split_sizes["val"] > 0
    assert rec.hardware["threads"] >= 1 and rec.git_dirty in (True, False)
    layout = Layout(run_dir)
    for mode in ("robust", "detrimental"):
        trials = _trial_dirs(run_dir, _cell().search(mode))
        assert len(trials) == 2
        # param_space holds only the searched value; the suite and data travel by with_parameters
        for t in trials:
            assert set(json.loads((t / "params.json").read_text())) == {"delta"}
            # one checkpoint per trial, the trial's own in the run folder: none in Tune's copy
            assert not list(t.glob("checkpoint_*")), sorted(t.iterdir())
        assert len(list((layout.trials / _cell().search(mode)).glob("*.pt"))) == 2


@pytest.mark.ray
@pytest.mark.slow
def test_local_run_gives_the_same_records_as_ray(ray_run, tmp_path):
    _, res = ray_run
    local = run_suite(load_suite(TINY), tmp_path / "local", local=True)
    assert not local.failed and not (tmp_path / "local" / "tune").exists()  # no Ray at all
    assert _numbers(local.records) == _numbers(res.records)


@pytest.mark.ray
@pytest.mark.slow
def test_a_grid_of_whole_configurations_runs_alike_on_ray_and_in_process(tmp_path):
    """``search.grid``: one trial per configuration, each with its own pair settings (learning
    rate, stealth allocations), on Ray (one grid search, param_space the configuration's name
    only) and with --local; the same records; the trial rows name the configurations in order,
    with their validation figures; a configuration reading pi_R makes the detrimental search wait
    for the robust one."""
    reads_pi_r = {"lr_student": 0.003, "stealth": 1.0, "stealth_allocations": ["robust_policy"]}
    grid = {"detrimental": [{"name": "plain", "pair": {}}, {"name": "pi-r", "pair": reads_pi_r}]}
    suite = tiny_suite(search={"grid": grid}, analyses=["pair_scores"])
    assert plan.reads_robust_policy(suite)
    ray = run_suite(suite, tmp_path / "ray")
    import ray as ray_module

    ray_module.shutdown()
    local = run_suite(suite, tmp_path / "local", local=True)
    assert not ray.failed and _numbers(local.records) == _numbers(ray.records)
    [rec] = ray.records
    rows = rec.searches["detrimental"]
    assert [r.configuration for r in rows] == ["plain", "pi-r"]
    assert all(r.val_drop is not None and r.val_fp_acc is not None for r in rows)
    assert rec.configuration["detrimental"] in {"plain", "pi-r"}
    assert rec.searches["robust"][0].configuration is None  # no robust grid: the pair section
    [cell] = plan.cells(suite, 10)
    for t in _trial_dirs(tmp_path / "ray", cell.search("detrimental")):
        assert set(json.loads((t / "params.json").read_text())) == {"configuration"}
    ckpts = {
        load_checkpoint(f, "pair-detrimental")["config"]["pair"]["lr_student"]
        for f in (Layout(tmp_path / "ray").trials / cell.search("detrimental")).glob("*.pt")
    }
    assert ckpts == {suite.pair.lr_student, 0.003}


@pytest.mark.ray
@pytest.mark.slow
def test_searches_of_a_stage_run_at_once(ray_run):
    """The robust and the detrimental search run at the same time, each with its own study: the
    span of one search's trials (first start to last end, from RUN/events.jsonl) overlaps the
    other's; one after another they could not. (Whether two single trials overlap as well
    depends on how long a trial takes next to starting its worker process: tiny trials do not.)"""
    run_dir, res = ray_run
    spans: dict[str, dict[str, list[float]]] = {}
    for e in read_events(run_dir):
        if e["event"] in ("trial_start", "trial_end") and e["experiment"].startswith("pair-"):
            spans.setdefault(e["experiment"], {}).setdefault(e["trial"], []).append(e["t"])
    robust, det = (spans[_cell().search(m)] for m in MODES)
    assert len(robust) == len(det) == 2 and all(
        len(t) == 2 for t in [*robust.values(), *det.values()]
    )

    def span(trials):
        return min(t[0] for t in trials.values()), max(t[1] for t in trials.values())

    (r0, r1), (d0, d1) = span(robust), span(det)
    assert r0 < d1 and d0 < r1, spans
    assert not res.failed


@pytest.mark.ray
@pytest.mark.slow
def test_stopped_after_the_first_search_resumes(ray_run, tmp_path, monkeypatch):
    # one search at a time (in this process: the patched search below is the one that runs)
    suite = parse_suite(with_change(yaml.safe_load(TINY.read_text()), "max_concurrent", 1))
    real, calls = RayExecutor.search, []

    def stop_after_first(self, *args, **kw):
        out = real(self, *args, **kw)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt("simulated stop")
        return out

    monkeypatch.setattr(RayExecutor, "search", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, tmp_path / "b")
    monkeypatch.setattr(RayExecutor, "search", real)
    resumed = run_suite(suite, tmp_path / "b")
    again = run_suite(suite, tmp_path / "b")
    for mode in ("robust", "detrimental"):
        assert len(_trial_dirs(tmp_path / "b", _cell().search(mode))) == 2
    straight = ray_run[1].records

    def numbers(records):  # max_concurrent is part of the suite (its text, hash, ids), not a number
        return [
            {
                k: v
                for k, v in r.items()
                if k not in ("id", "suite_hash", "suite_text", "per_example")
            }
            for r in records
        ]

    assert numbers(_numbers(resumed.records)) == numbers(_numbers(straight))
    assert _numbers(resumed.records) == _numbers(again.records)
    assert len(store.load(tmp_path / "b")) == 1  # never duplicated


@pytest.mark.ray
@pytest.mark.slow
def test_two_node_cluster_on_loopback(tmp_path):
    """Two Ray nodes on 127.0.0.1 (tests/support/cluster.py); trials land on both."""
    from tests.support.cluster import LOOPBACK, loopback_cluster

    temp = Path(tempfile.mkdtemp(prefix="dptq-2n-", dir="/tmp"))  # short: Ray's socket paths
    try:
        with loopback_cluster(temp) as (cluster, _):
            run_dir = tmp_path / "run"
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench",
                    "run",
                    str(TINY),
                    "--out",
                    str(run_dir),
                    "--address",
                    cluster.address,
                    "--leaderboard",
                    "",  # never touch the repository's leaderboard from a test
                ],
                cwd=ROOT,
                env={**os.environ, **LOOPBACK},
                capture_output=True,
                text=True,
                timeout=900,
            )
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    nodes = set()
    for result in (run_dir / "tune").glob("pair-*/_trainable*/result.json"):
        for line in result.read_text().splitlines():
            nodes.add(json.loads(line)["node_id"])
    assert len(nodes) == 2, f"trials ran on {len(nodes)} node(s)"
    assert store.load(run_dir)[0].error is None


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("where", ["--local", "ray"])
def test_mixed_precision_runs_every_stage_and_the_audit(where, tmp_path):
    """bf16 autocast in training, one Accelerator per process: the audit and every analysis
    reuse it (a second Accelerator with other settings used to fail every analysis)."""

    suite = write_suite(
        tmp_path / "bf16.yaml",
        **{"resources.precision": "bf16", "search": {"num_samples": 1}},
        analyses=["pair_scores", "cross_policy", "audit", "quantizer_transfer"],
        audit={"epochs": 1},
    )
    args = ["run", str(suite), "--out", str(tmp_path / "run"), "--leaderboard", ""]
    assert main(args + ([where] if where == "--local" else [])) == 0
    [rec] = store.load(tmp_path / "run")
    assert rec.error is None and rec.analysis("audit") is not None


def test_cells_globs_pick_cells_by_key_and_a_typo_is_one_line():
    suite = tiny_suite(seed=..., seeds=[0, 1], avg_bits=[4, 5])
    cells = plan.cells(suite, 10)
    budgets = sorted({c.budget for c in cells})
    picked = matching_cells(cells, (f"*-{budgets[1]}-s1", f"*-{budgets[0]}-s0"))
    assert [(c.budget, c.seed) for c in picked] == [(budgets[0], 0), (budgets[1], 1)]
    assert matching_cells(cells, ("*",)) == cells
    with pytest.raises(SuiteError, match=r"--cells: 'resnet-\*' matches none of the suite's"):
        matching_cells(cells, ("*-s0", "resnet-*"))


def test_cli_cells_typo_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    suite = write_suite(tmp_path / "two.yaml", avg_bits=[4, 5])
    out = tmp_path / "run"
    assert main(["run", str(suite), "--local", "--cells", "nope-*", "--out", str(out)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --cells: 'nope-*' matches none") and not out.exists()


@pytest.mark.slow
def test_a_run_of_some_cells_gives_the_whole_runs_records(tmp_path):
    """``--cells``: one budget's cell only (its teacher, f_N and pairs); the run without it then
    reuses that record byte for byte and trains only the other budget's pairs."""
    suite = tiny_suite(avg_bits=[4, 5], analyses=["pair_scores"])
    one, other = plan.cells(suite, 10)
    part = run_suite(suite, tmp_path, local=True, cells=(f"*-{one.budget}-*",))
    assert [r.budget for r in part.records] == [one.budget] and part.records[0].error is None
    layout = Layout(tmp_path.resolve())
    assert not any(layout.summary(other.search(m)).exists() for m in MODES)
    written = {p: p.read_bytes() for p in (tmp_path / "records").rglob("*.json")}
    whole = run_suite(suite, tmp_path, local=True)
    assert sorted(r.budget for r in whole.records) == sorted([one.budget, other.budget])
    assert {p: p.read_bytes() for p in written} == written


@pytest.mark.slow
def test_a_run_of_some_seeds_gives_the_whole_runs_records(tmp_path):
    """``--seeds 1``: seed 1's cells only, on the shared teacher and f_N; the run without it
    then reuses that record (same file, same numbers) and trains only seed 0's pairs."""
    suite = tiny_suite(seed=..., seeds=[0, 1], share_stages=True, analyses=["pair_scores"])
    part = run_suite(suite, tmp_path, local=True, seeds=(1,))
    assert [r.seed for r in part.records] == [1] and part.records[0].error is None
    layout = Layout(tmp_path.resolve())
    [zero] = [c for c in plan.cells(suite, 10) if c.seed == 0]
    assert not any(layout.summary(zero.search(m)).exists() for m in MODES)
    written = {p: p.read_bytes() for p in (tmp_path / "records").rglob("*.json")}
    whole = run_suite(suite, tmp_path, local=True)
    assert sorted(r.seed for r in whole.records) == [0, 1]
    assert {p: p.read_bytes() for p in written} == written  # seed 1's record reused as it was
    with pytest.raises(SuiteError, match=r"--seeds: \[7\] not among the suite's seeds \[0, 1\]"):
        run_suite(suite, tmp_path, local=True, seeds=(7,))


def test_a_run_folder_is_claimed_by_its_own_suite_only_even_across_an_upgrade(tmp_path):
    """A run started before an upgrade that added a field (its suite.yaml lacks it) resumes
    after the upgrade; a run of other settings, or an unreadable suite.yaml, is one line."""
    from bench.config.suite import suite_text
    from bench.pipeline.folder import claim

    suite = tiny_suite()
    layout = Layout(tmp_path.resolve())
    old = yaml.safe_load(suite_text(suite))
    for key in ("floor_barred", "stealth_kd"):  # fields later than the run
        del old["pair"][key]
    tmp_path.mkdir(exist_ok=True)
    layout.suite_file.write_text(yaml.safe_dump(old))
    claim(suite, layout, fresh=False)
    assert yaml.safe_load(layout.suite_file.read_text())["pair"]["floor_barred"] == []
    other = yaml.safe_dump(with_change(yaml.safe_load(suite_text(suite)), "pair.epochs", 7))
    for text in (other, "pair: [unclosed"):
        layout.suite_file.write_text(text)
        with pytest.raises(SuiteError, match="holds a run of a different suite; use --fresh"):
            claim(suite, layout, fresh=False)


@pytest.mark.slow
def test_a_stage_copied_from_another_suite_is_reused_only_where_its_settings_match(tmp_path):
    """Teacher and KD copied between suites that differ only in what those stages do not read
    (the analyses) are reused untouched; a KD copied into a suite with another KD recipe is one
    line naming it, before anything trains on it."""
    suite = tiny_suite(analyses=["pair_scores"])
    run_suite(suite, tmp_path / "a", local=True)
    src = Layout((tmp_path / "a").resolve())
    kd = plan.kd_name(NET, 0)

    def copy_stages(dst: Path) -> dict:
        for name in (plan.teacher_name(0), kd):
            (dst / "artifacts").mkdir(parents=True, exist_ok=True)
            shutil.copy(src.summary(name), dst / "artifacts" / src.summary(name).name)
            shutil.copytree(src.trials / name, dst / "trials" / name)
        return {p: p.stat().st_mtime_ns for p in (dst / "trials").rglob("*.pt")}

    stamps = copy_stages(tmp_path / "b")
    other = tiny_suite(analyses=["pair_scores", "transitory"])
    [rec] = run_suite(other, tmp_path / "b", local=True).records
    assert rec.error is None and {p: p.stat().st_mtime_ns for p in stamps} == stamps
    copy_stages(tmp_path / "c")
    with pytest.raises(SuiteError, match=rf"stage {kd} was trained from other settings"):
        run_suite(tiny_suite(**{"kd_stage.epochs": 3}), tmp_path / "c", local=True)
    assert not list((tmp_path / "c" / "trials").glob("pair-*"))
