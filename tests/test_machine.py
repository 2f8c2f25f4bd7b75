"""What a record keeps of the machine and the checkout (bench.records.machine)."""

import subprocess

from bench.records.machine import git_state, hardware
from bench.records.verify import TEXT


def test_git_state_sees_a_changed_tracked_file(tmp_path):
    assert git_state(tmp_path) == (None, None)  # not a checkout
    run = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "a.txt").write_text("1")
    run("add", "a.txt")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    commit, dirty = git_state(tmp_path)
    assert len(commit) == 40 and dirty is False
    (tmp_path / "new.txt").write_text("untracked")  # does not count
    assert git_state(tmp_path)[1] is False
    (tmp_path / "a.txt").write_text("2")
    assert git_state(tmp_path) == (commit, True)


def test_hardware_is_what_a_record_can_hold():
    hw = hardware()
    assert hw["cores"] >= 1 and hw["threads"] >= 1 and hw["capability"]
    assert all(TEXT.fullmatch(v) for v in hw.values() if isinstance(v, str))


def test_the_fingerprint_tells_two_machines_apart_and_keeps_one_the_same(tmp_path, monkeypatch):
    """A record names its machine beyond its CPU's model name: the vector instructions, torch's
    build and BLAS, and a random id kept in the machine's cache (the same id every time; another
    cache, another machine)."""
    from bench.records.machine import machine_id

    monkeypatch.delenv("DPTQ_MACHINE_ID", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "one"))
    first = machine_id()
    assert len(first) == 32 and machine_id() == first
    assert (tmp_path / "one" / "dptq-bench" / "machine-id").read_text().strip() == first
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "two"))
    assert machine_id() != first
    hw = hardware()
    assert {"cpu_flags", "blas", "torch", "machine_id"} <= set(hw)
    assert hw["machine_id"] == machine_id() and hw["blas"]
