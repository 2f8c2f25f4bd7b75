"""The command line: help lists the commands; user mistakes give one line and exit 2."""

import pytest

from bench.__main__ import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("run", "pipeline", "demo", "perf", "leaderboard", "list", "compare"):
        assert cmd in out


@pytest.mark.parametrize(
    "pair,expected",
    [
        ('{"alpah": 1}', "pair.alpah: unknown field; did you mean 'alpha'?"),
        ('{"epochs": -1}', "epochs: must be a number > 0, got -1"),
        ('{"budget": 3}', "budget: budget 3 is outside"),
        ("{not json", "--pair is not valid JSON"),
    ],
)
def test_pipeline_bad_input_one_line(tmp_path, capsys, pair, expected):
    out_dir = tmp_path / "run"
    assert main(["pipeline", str(out_dir), "--pair", pair]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err and "Traceback" not in err
    assert not out_dir.exists()
