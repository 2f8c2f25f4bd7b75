"""The command line: help lists the commands; user mistakes give one line and exit 2."""

import pytest

from bench.__main__ import main
from tests.support.helpers import write_suite

NET = "tests.support.nets:small_net"


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("run", "demo", "perf", "leaderboard", "list", "compare"):
        assert cmd in out
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "--local" in capsys.readouterr().out


@pytest.mark.parametrize(
    "change,expected",
    [
        ({"pair.alpah": 1}, "pair.alpah: unknown key; did you mean 'alpha'?"),
        ({"pair.epochs": -1}, "pair.epochs: must be a number > 0, got -1"),
        ({"students": [{"name": NET, "budgets": [3]}]}, "budget 3 is outside"),
        ({"pair.budget": 80}, "pair.budget: set by the plan"),
        ({"dataset.options.image_size": None}, "dataset.options.image_size: expected an integer"),
        ({"dataset.options.root": "x"}, "dataset.options.root: unknown key"),
        ({"policy_options.width": 10**9}, "policy_options.width: must lie in 1..512"),
        ({"name": "a/b"}, "name: 'a/b' must be 1-64 letters"),
    ],
)
def test_run_bad_input_one_line(tmp_path, capsys, change, expected):
    out_dir = tmp_path / "run"
    suite = write_suite(tmp_path / "s.yaml", **change)
    assert main(["run", str(suite), "--local", "--out", str(out_dir), "--leaderboard", ""]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err and "Traceback" not in err, err
    assert not out_dir.exists()


def test_suite_that_is_not_utf8_gives_one_line(tmp_path, capsys):
    f = tmp_path / "latin1.yaml"
    f.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert main(["run", str(f), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {f}: not UTF-8 text") and "\n" not in err


@pytest.mark.parametrize(
    "address,why",
    [("127.0.0.1:1", "Connection refused"), ("127.0.0.1", "expected host:port")],
)
def test_unreachable_address_gives_one_line_at_once(tmp_path, capsys, address, why):
    """Not a ConnectionError traceback after Ray's 30 s of retries; nothing written."""
    out = tmp_path / "run"
    code = main(["run", "tests/suites/tiny.yaml", "--address", address, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"error: --address {address}: ") and why in err
    assert not out.exists()
