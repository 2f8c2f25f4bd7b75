"""Reliability, by doing the bad things for real (README: "What happens when things go wrong").

Every test here runs ``python -m bench run`` as a separate process, as a user would, and then
kills it with SIGKILL, kills a Ray node's processes, lets trials go bad, or hands it broken files.
Ray Tune runs on this machine only, on loopback. A killed driver leaves some Ray daemons behind
(they outlive their parent); the tests kill those too, as a pre-empted machine would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from bench.board.leaderboard import board_readme, frame
from bench.config.suite import load_suite
from bench.executors.events import read_events
from bench.names import Layout, slug
from bench.pipeline import search
from bench.records import store
from dptq.engine import checkpoint_epoch as load_checkpoint_epoch

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "tests" / "suites" / "reliability.yaml"
FAULTY = ROOT / "tests" / "suites" / "faulty.yaml"
NET = slug("tests.support.nets:small_net")
FAULTY_NET = slug("tests.support.faulty:")  # + the network's name
KD_EPOCHS, PAIR_EPOCHS = 6, 3  # as in tests/suites/reliability.yaml
PAIRS = {m: f"pair-{NET}-I-12-s0-{m}" for m in ("robust", "detrimental")}
KD = f"kd-{NET}-s0"
VOLATILE = ("date", "per_example", "stage_seconds", "searches")  # when, how long, where its file is
START = search.space(load_suite(SUITE))[1]  # the pair settings every trial starts from

pytestmark = [pytest.mark.ray]


def _env(**extra) -> dict:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    env.update(extra)
    return env


def _start(run_dir: Path, board: Path, log: Path, suite=SUITE, env=None, extra=()):
    """``python -m bench run`` in its own process group (so a test can reap what Ray leaves)."""
    cmd = [sys.executable, "-m", "bench", "run", str(suite), "--out", str(run_dir)]
    cmd += ["--leaderboard", str(board), "--submit", *extra]
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env or _env(),
        stdout=open(log, "a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _reap(pgid: int) -> None:
    """SIGKILL whatever is left of a process group; wait until it is gone."""
    for _ in range(100):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def _finish(proc, timeout=900) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        _reap(proc.pid)


def _kill_driver(proc) -> None:
    """kill -9 of the driver, then of the daemons Ray leaves orphaned."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    _reap(proc.pid)


def _wait_until(proc, cond, log: Path, timeout=600) -> None:
    t0 = time.time()
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before the kill point:\n{log.read_text()[-3000:]}")
        if time.time() - t0 > timeout:
            _kill_driver(proc)
            pytest.fail(f"the kill point was not reached in {timeout} s")
        time.sleep(0.05)


def _rows(board: Path, suite="reliability") -> list[dict]:
    recs = [r.to_json() for r in store.load(board) if r.suite == suite]
    for r in recs:
        pe = board / r["per_example"] if r.get("per_example") else None
        r["per_example_sha"] = hashlib.sha256(pe.read_bytes()).hexdigest() if pe else None
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in recs]


def _digest(path: Path) -> tuple[int, str]:
    return path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def _epochs(folder: Path) -> dict[Path, int]:
    return {p: load_checkpoint_epoch(p) for p in folder.glob("*.pt")} if folder.is_dir() else {}


def _files(board: Path, subs=(store.RECORDS, store.PER_EXAMPLE)) -> dict[Path, bytes]:
    """Every file of a board's records and per-example results, with its bytes."""
    return {
        p.relative_to(board): p.read_bytes()
        for sub in subs
        for p in (board / sub).rglob("*")
        if p.is_file() and not p.name.startswith(".")  # a writer's temp file is not a record
    }


def _files_of(files: dict[Path, bytes], sub: str) -> dict[Path, bytes]:
    return {p: b for p, b in files.items() if p.parts[0] == sub}


def _kept(board: Path, old: dict[Path, bytes]) -> bool:
    """The board still holds every file it held, byte for byte."""
    now = _files(board)
    return all(now.get(p) == b for p, b in old.items())


def _seed_board(board: Path) -> dict[Path, bytes]:
    """A leaderboard that already holds a row of another suite (it must survive everything)."""
    [rec] = [r for r in store.load(ROOT / "leaderboard") if r.suite_hash == "b0107eab9688"]
    store.add([rec], board, source=ROOT / "leaderboard")
    return _files(board)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The suite run once without interruption: the rows every interrupted run must match."""
    base = tmp_path_factory.mktemp("reference")
    proc = _start(base / "run", base / "board", base / "log.txt")
    assert _finish(proc) == 0, (base / "log.txt").read_text()[-3000:]
    rows = _rows(base / "board")
    assert len(rows) == 1 and rows[0]["error"] is None and rows[0]["retries"] == []
    assert 30 < rows[0]["f_n_acc"] < 100  # the stages learn: equal rows mean something
    return base, rows


# --- 1. killed mid-run -----------------------------------------------------------------------


@pytest.mark.slow
def test_killed_during_kd_resumes_from_its_checkpoint(tmp_path, reference):
    run, board, log = tmp_path / "run", tmp_path / "board", tmp_path / "log.txt"
    old = _seed_board(board)
    layout = Layout(run)
    kd_trial, kd_done = layout.trial(KD, {}), layout.summary(KD)
    proc = _start(run, board, log)
    _wait_until(proc, lambda: load_checkpoint_epoch(kd_trial) >= 1 and not kd_done.exists(), log)
    _kill_driver(proc)
    at_kill = load_checkpoint_epoch(kd_trial)
    assert 1 <= at_kill < KD_EPOCHS, f"the kill landed after KD (epoch {at_kill})"
    assert _files(board) == old
    teacher = _digest(layout.artifact("teacher-s0"))

    assert _finish(_start(run, board, log)) == 0, log.read_text()[-3000:]
    assert _digest(layout.artifact("teacher-s0")) == teacher  # not trained again
    assert layout.artifact(KD) == kd_trial  # the one checkpoint: the trial's file
    kd = torch.load(kd_trial, map_location="cpu", weights_only=True)
    assert kd["resumed_from"] == [at_kill] and [h["epoch"] for h in kd["history"]] == list(
        range(1, KD_EPOCHS + 1)
    )
    assert _rows(board) == reference[1]
    assert _kept(board, old)


@pytest.mark.slow
def test_killed_during_pair_search_keeps_finished_trials_and_searcher(tmp_path, reference):
    run, board, log = tmp_path / "run", tmp_path / "board", tmp_path / "log.txt"
    old = _seed_board(board)
    det = run / "trials" / PAIRS["detrimental"]

    def mid_search():  # one trial of the second search finished, another one part-way
        ep = list(_epochs(det).values())
        return PAIR_EPOCHS in ep and any(1 <= e < PAIR_EPOCHS for e in ep)

    proc = _start(run, board, log)
    _wait_until(proc, mid_search, log)
    _kill_driver(proc)
    at_kill = _epochs(det)
    finished = [p for p, e in at_kill.items() if e == PAIR_EPOCHS]
    partial = {p: e for p, e in at_kill.items() if 1 <= e < PAIR_EPOCHS}
    assert finished and partial, f"the kill did not land mid-search: {at_kill}"
    before = {p: _digest(p) for p in finished}
    # both searches run at once: the robust one may have finished before the kill, or not
    robust_file = Layout(run).artifact(PAIRS["robust"])
    robust = _digest(robust_file) if robust_file is not None else None

    assert _finish(_start(run, board, log)) == 0, log.read_text()[-3000:]
    if robust is not None:  # a finished search is not run again
        assert _digest(robust_file) == robust
    assert {p: _digest(p) for p in finished} == before  # finished trials not trained again
    for p, e in partial.items():  # the interrupted trial went on from its last epoch
        assert torch.load(p, weights_only=True)["resumed_from"] == [e]
    # the searcher kept its history: the same sampled values as the uninterrupted run, no more
    state = sorted((run / "tune" / PAIRS["detrimental"]).glob("experiment_state-*.json"))[-1]
    trials = [json.loads(t[0]) for t in json.loads(state.read_text())["trial_data"]]
    ref_state = sorted(
        (reference[0] / "run" / "tune" / PAIRS["detrimental"]).glob("experiment_state-*.json")
    )[-1]
    ref_trials = [json.loads(t[0]) for t in json.loads(ref_state.read_text())["trial_data"]]

    def sampled(ts):
        return sorted(json.dumps(t["config"]["delta"]) for t in ts)

    assert len(trials) == 2 and sampled(trials) == sampled(ref_trials)
    layout = Layout(run)
    own = [layout.trial(PAIRS["detrimental"], {**START, **t["config"]}) for t in trials]
    assert sorted(_epochs(det)) == sorted(own)
    assert _rows(board) == reference[1]
    assert _kept(board, old)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["store:before-rename", "leaderboard:added", "leaderboard:views"])
def test_killed_during_leaderboard_write_loses_nothing(tmp_path, reference, point):
    """The finished reference run is run again (nothing to train: only its leaderboard write)
    into a board that already holds a row, and killed at ``point`` of that write."""
    ref_run = reference[0] / "run"
    board, log, marker = tmp_path / "board", tmp_path / "log.txt", tmp_path / "at-failpoint"
    old = _seed_board(board)
    env = _env(DPTQ_FAILPOINT=point, DPTQ_FAILPOINT_FILE=str(marker))
    proc = _start(ref_run, board, log, env=env)
    _wait_until(proc, marker.exists, log)
    _kill_driver(proc)
    assert _kept(board, old)  # the row already there is intact
    store.load(board)  # never half a record: every record file there is whole
    if point == "store:before-rename":  # the new record's file is not there yet (its
        # per-example file, written first so no record points at a missing one, may be)
        assert _files(board, [store.RECORDS]) == _files_of(old, store.RECORDS)

    assert _finish(_start(ref_run, board, log)) == 0, log.read_text()[-3000:]
    assert _rows(board) == reference[1]
    assert _kept(board, old)
    # the views were regenerated from every record, not left as the kill found them
    md = board_readme(frame(store.load(board)))
    assert (board / "README.md").read_text() == md
    assert not list(board.rglob(".*.tmp"))


# --- 2. a node dies --------------------------------------------------------------------------


def _pids() -> set[int]:
    return {int(p) for p in os.listdir("/proc") if p.isdigit()}


def _descendants(roots: set[int]) -> set[int]:
    parent = {}
    for pid in _pids():
        try:
            parent[pid] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found, grew = set(roots), True
    while grew:
        new = {p for p, pp in parent.items() if pp in found and p not in found}
        found |= new
        grew = bool(new)
    return found


@pytest.mark.slow
def test_node_dies_and_its_trial_is_retried_on_a_live_node(tmp_path):
    """Three Ray nodes on loopback: a head that runs no trials (0 CPUs: the driver lives there)
    and two workers with a CPU each; the node running a trial is SIGKILLed mid-trial."""
    from tests.support.cluster import LOOPBACK, loopback_cluster, node_pids

    run, board, log = tmp_path / "run", tmp_path / "board", tmp_path / "log.txt"
    temp = Path(tempfile.mkdtemp(prefix="dptq-nd-", dir="/tmp"))  # short: Ray's socket paths
    try:
        with loopback_cluster(temp, nodes=3, head_cpus=0) as (cluster, workers):
            nodes = {w.node_id: w for w in workers}

            def trial_mid_way():  # a trial has reported an epoch and is not finished
                for res in run.glob("tune/*/*/result.json"):
                    lines = res.read_text().splitlines()
                    try:
                        last = json.loads(lines[-1]) if lines else {}
                    except ValueError:
                        continue
                    pair = res.parent.parent.name.startswith("pair-")
                    total = PAIR_EPOCHS if pair else KD_EPOCHS
                    if last.get("node_id") in nodes and 1 <= last.get("epoch", 0) < total:
                        return res, last["node_id"]
                return None

            env = _env(**LOOPBACK)
            # one CPU per trial: a worker node has one (the kill tests' suite asks for two)
            suite = _suite_with(
                tmp_path, students=["tests.support.faulty:slow_net"], resources={"cpus": 1}
            )
            extra = ("--address", cluster.address)
            proc = _start(run, board, log, suite=suite, env=env, extra=extra)
            _wait_until(proc, trial_mid_way, log)
            victim, node_id = trial_mid_way() or (None, None)
            assert victim is not None, "the trial finished before its node could be killed"
            for pid in _descendants(node_pids(nodes[node_id])):  # raylet, agents, trial workers
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            assert _finish(proc) == 0, log.read_text()[-3000:]
    finally:
        shutil.rmtree(temp, ignore_errors=True)

    experiment = victim.parent.parent.name
    retries = [e for e in read_events(run) if e["event"] == "retry"]
    assert [(e["experiment"], e["node"]) for e in retries] == [(experiment, node_id)]
    assert retries[0]["reason"].startswith("worker or node died"), retries[0]
    last = json.loads(victim.read_text().splitlines()[-1])
    assert last["node_id"] != node_id  # finished on the live node
    [row] = _rows(board)
    assert [(r["experiment"], r["node"]) for r in row["retries"]] == [(experiment, node_id)]
    # resumed from its checkpoint, and the row's numbers are those of the reference run
    params = json.loads((victim.parent / "params.json").read_text())
    layout = Layout(run)
    own = layout.trial(experiment, {**START, **params} if experiment.startswith("pair-") else {})
    assert torch.load(own, weights_only=True)["resumed_from"], own
    assert row["error"] is None and isinstance(row["gap"], float)


# --- 3. a trial goes bad ---------------------------------------------------------------------


@pytest.mark.slow
def test_bad_trials_fail_alone_with_their_reason(tmp_path):
    """tests/support/faulty.py: NaN loss and out of memory in the pair stage, an exception during KD."""
    run, board, log = tmp_path / "run", tmp_path / "board", tmp_path / "log.txt"
    old = _seed_board(board)
    assert _finish(_start(run, board, log, suite=FAULTY)) == 1, log.read_text()[-3000:]
    out = log.read_text()
    recs = {r.architecture: r.to_json() for r in store.load(board) if r.suite == "faulty"}
    assert len(recs) == 4 and _kept(board, old)
    good = recs.pop("tests.support.nets:small_net")
    assert good["error"] is None and isinstance(good["gap"], float)
    nan, oom, bug = (recs[f"tests.support.faulty:{n}"] for n in ("nan_net", "oom_net", "raise_net"))
    assert nan["error"].startswith(f"pair-{FAULTY_NET}nan_net-I-12-s0-robust: non-finite loss")
    assert "out of memory" in oom["error"] and "allocate" in oom["error"]
    assert bug["error"].startswith(f"kd-{FAULTY_NET}raise_net-s0: RuntimeError: simulated bug")
    for r in (nan, oom, bug):
        assert r.get("gap") is None  # a failed entry, not a number
        assert r["id"].rsplit("/", 1)[1].startswith("failed-")
        assert f"FAILED {r['error'].split(': ')[0]}: " in out
    md = (board / "README.md").read_text()
    assert md.count("Failed: `") == 3 and "non-finite loss" in md
    # the run's own results say the same, and the event log has each failure
    assert {r.id for r in store.load(run)} == {
        r.id for r in store.load(board) if r.suite == "faulty"
    }
    failed = sorted(e["experiment"] for e in read_events(run) if e["event"] == "failed")
    assert failed == sorted(
        [f"kd-{FAULTY_NET}raise_net-s0"]
        + [f"pair-{FAULTY_NET}{n}-I-12-s0-{m}" for n in ("nan_net", "oom_net") for m in PAIRS]
    )


# --- 4. bad files ----------------------------------------------------------------------------


def _cli(*args):
    """``python -m bench ARGS`` in this process (nothing here trains: no subprocess, no Ray)."""
    import contextlib
    import io
    from types import SimpleNamespace

    from bench.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def _one_line(proc, *must) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err[-2000:])
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for m in must:
        assert m in err, (m, err)
    return err


@pytest.mark.slow
def test_truncated_or_foreign_checkpoint_gives_one_line(tmp_path, reference):
    run, board = tmp_path / "run", tmp_path / "board"
    old = _seed_board(board)
    shutil.copytree(reference[0] / "run", run, ignore=shutil.ignore_patterns("tune", "ray"))
    kd = Layout(run).artifact(KD)
    good = kd.read_bytes()
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    cases = {
        "truncated": lambda: kd.write_bytes(good[: len(good) // 2]),
        "foreign pickle": lambda: torch.save({"stage": "kd", "modules": Evil()}, kd),
        "another stage": lambda: shutil.copy(Layout(run).artifact("teacher-s0"), kd),
    }
    for name, corrupt in cases.items():
        corrupt()
        err = _one_line(_cli("run", SUITE, "--out", run, "--leaderboard", board), str(kd))
        assert "delete it" in err, name
        assert _files(board) == old, name
    assert not marker.exists()  # the pickle was refused, not run


def test_broken_leaderboard_line_stops_before_any_work(tmp_path):
    board = tmp_path / "board"
    _seed_board(board)
    broken = board / store.RECORDS / "x" / "half.json"
    broken.parent.mkdir()
    broken.write_text('{"schema_version": 1, "id": "half')
    old = _files(board)
    where = f"{broken}: not readable JSON"
    _one_line(_cli("run", SUITE, "--out", tmp_path / "run", "--leaderboard", board), where)
    assert not (tmp_path / "run").exists()  # stopped before any work
    _one_line(_cli("leaderboard", "--dir", board), where)
    assert _files(board) == old
    assert sorted(p.name for p in board.iterdir()) == [
        store.PER_EXAMPLE,
        store.RECORDS,
        store.REPORTS,
    ]


def _suite_with(tmp_path, **fields) -> Path:
    """tests/suites/reliability.yaml with some top-level fields replaced."""
    import yaml

    spec = {**yaml.safe_load(SUITE.read_text()), **fields}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_missing_dataset_gives_one_line(tmp_path):
    board = tmp_path / "board"
    old = _seed_board(board)
    suite = _suite_with(
        tmp_path, dataset={"name": "imagefolder", "options": {"root": "/nonexistent/x"}}
    )
    _one_line(
        _cli("run", suite, "--out", tmp_path / "run", "--leaderboard", board), "/nonexistent/x"
    )
    assert _files(board) == old and not (tmp_path / "run").exists()


def test_unreadable_images_stop_or_are_skipped_as_the_suite_says(tmp_path):
    from PIL import Image

    root = tmp_path / "images"
    for split in ("train", "test"):
        for cls, color in (("a", (250, 0, 0)), ("b", (0, 0, 250))):
            (root / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (16, 16), color).save(root / split / cls / f"{i}.png")
    bad = root / "train" / "b" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 cut off here")
    board = tmp_path / "board"
    old = _seed_board(board)
    opts = {"root": str(root), "image_size": 12}
    stop = _suite_with(tmp_path, dataset={"name": "imagefolder", "options": opts})
    _one_line(
        _cli("run", stop, "--out", tmp_path / "run", "--leaderboard", board),
        str(bad),
        "bad_images: skip",
    )
    assert _files(board) == old and not (tmp_path / "run").exists()
    skip = _suite_with(
        tmp_path, dataset={"name": "imagefolder", "options": opts, "bad_images": "skip"}
    )
    proc = _cli("run", skip, "--dry-run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1 unreadable image(s) left out" in proc.stdout and str(bad) in proc.stdout
