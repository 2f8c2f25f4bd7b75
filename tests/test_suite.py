"""Suites: every shipped suite loads; malformed ones give one line naming file and field."""

from pathlib import Path

import pytest
import yaml

from bench.__main__ import main
from bench.suite import load_suite

ROOT = Path(__file__).resolve().parent.parent
TINY = yaml.safe_load((ROOT / "tests" / "suites" / "tiny.yaml").read_text())


@pytest.mark.parametrize("path", sorted((ROOT / "suites").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_suites_load(path):
    suite = load_suite(path)
    assert suite.name == path.stem and len(suite.digest()) == 12


def test_default_dry_run_prints_plan(capsys, tmp_path):
    assert (
        main(
            [
                "run",
                str(ROOT / "suites" / "default.yaml"),
                "--dry-run",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "2 searches x 1 samples = 2 trials" in out and "budget 80" in out
    assert not (tmp_path / "r").exists()  # nothing written, Ray not started


def with_change(path: str, value):
    """TINY with the dotted ``path`` set to ``value`` (``...`` deletes it)."""
    import copy

    data = copy.deepcopy(TINY)
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return data


BAD = [
    ("nmae", "t", "nmae: unknown key; did you mean 'name'?"),
    ("name", ..., "name: required key is missing"),
    ("seed", "zero", "seed: expected an integer, got 'zero'"),
    ("students", [], "students: must not be empty"),
    ("students", ["resnet_typo"], "students[resnet_typo]: unknown timm model 'resnet_typo'"),
    ("students", ["no_such_module:fn"], "cannot import model 'no_such_module:fn'"),
    ("modes", ["robust", "evil"], "modes[1]: 'evil' is not one of 'robust', 'detrimental'"),
    (
        "bit_options",
        {"I": [3, 4, 20]},
        "bit_options.I: need distinct bit-widths in 2..16, got [3, 4, 20]",
    ),
    ("avg_bits", [1.0], "budget 3 is outside"),
    ("pair.epochs", -2, "pair.epochs: must be a number > 0, got -2"),
    ("pair.hinge_space", "softmax", "pair.hinge_space: 'softmax' is not one of 'prob', 'logit'"),
    ("pair.lr_polcy", 0.1, "pair.lr_polcy: unknown key; did you mean 'lr_policy'?"),
    ("kd_stage.optimizer", "adamax", "kd_stage.optimizer: 'adamax' is not one of 'sgd', 'adamw'"),
    ("kd_stage.augment.hflp", True, "kd_stage.augment.hflp: unknown key; did you mean 'hflip'?"),
    ("search.delta", {"low": 4.0, "high": 1.0}, "search.delta: low 4.0 must be <= high 1.0"),
    (
        "search.delta",
        {"low": 0.0, "high": 1.0, "log": True},
        "search.delta: a log range needs low > 0",
    ),
    ("search.num_samples", 0, "search.num_samples: must be >= 1"),
    ("resources", {"cpus": 1, "gpus": -0.5}, "resources: cpus must be > 0 and gpus >= 0"),
    ("dataset.name", "mnist", "dataset: unknown dataset 'mnist'"),
    (
        "dataset",
        {"name": "imagefolder", "options": {"root": "/nonexistent/imgs"}},
        "dataset 'imagefolder' not found under /nonexistent/imgs",
    ),
    ("analyses", ["pair_scores", "histogram"], "analyses[1]: 'histogram' is not one of"),
    ("retries", -1, "retries: must be >= 0"),
    ("teacher", "resnet50", "teacher: expected a mapping with keys name, pretrained"),
]


@pytest.mark.parametrize("path,value,expected", BAD, ids=[b[0] + str(i) for i, b in enumerate(BAD)])
def test_malformed_suite_one_line(tmp_path, capsys, path, value, expected):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(with_change(path, value)))
    assert main(["run", str(f), "--dry-run", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {f}") or "students[" in err or "dataset" in err, err
    assert expected in err, err
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_yaml_syntax_error_names_line(tmp_path, capsys):
    f = tmp_path / "broken.yaml"
    f.write_text("name: x\nstudents: [resnet18\n")
    assert main(["run", str(f), "--dry-run"]) == 2
    assert "not valid YAML (line" in capsys.readouterr().err


def test_yaml_tag_that_would_execute_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    f = tmp_path / "evil.yaml"
    f.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    assert main(["run", str(f), "--dry-run"]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert not marker.exists()


def test_missing_suite_file(capsys):
    assert main(["run", "no/such/suite.yaml", "--dry-run"]) == 2
    assert "no such suite file" in capsys.readouterr().err
