"""Suites: every shipped suite loads; malformed ones give one line naming file and field."""

from pathlib import Path

import pytest
import yaml

from bench.__main__ import main
from bench.config.suite import load_suite

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
        if isinstance(node, list):
            node = node[int(p)]
        else:
            if node.get(p) is None:  # a section the suite leaves out (or null)
                node[p] = {}
            node = node[p]
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
    ("modes", ["robust", "detrimental"], "modes: every cell trains a robust and a detrimental"),
    ("kd_stage.augment.mixup", False, "kd_stage.augment.mixup: batch mixup is the stage's own"),
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


def test_resolved_suite_round_trips():
    """The resolved suite saved in a run folder loads back into the same suite."""
    from bench.config.suite import parse_suite, to_plain

    for path in sorted((ROOT / "suites").glob("*.yaml")):
        suite = load_suite(path)
        again = parse_suite(yaml.safe_load(yaml.safe_dump(to_plain(suite))), "saved")
        assert again == suite and again.digest() == suite.digest()


WEIRD = [
    None,
    "x",
    "",
    -1,
    0,
    10**12,
    2**70,
    -(10**9),
    1e300,
    float("nan"),
    -1e-9,
    True,
    [],
    {},
    [None],
    {"x": 1},
    "ünïcødé ☃ \u202e",
    "\x00\x01",
    "../../etc/passwd",
    "a" * 5000,
]


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _schema_paths(cls, prefix=()):
    """Every field path of the suite schema, set in a shipped suite or not."""
    import dataclasses
    import typing

    for f in dataclasses.fields(cls):
        yield (*prefix, f.name)
        for tp in (
            typing.get_type_hints(cls)[f.name],
            *typing.get_args(typing.get_type_hints(cls)[f.name]),
        ):
            if dataclasses.is_dataclass(tp):
                yield from _schema_paths(tp, (*prefix, f.name))


def _mutate(data, rng):
    import copy

    from bench.config.suite import Suite

    data = copy.deepcopy(data)
    kind = rng.choice(["value", "value", "delete", "unknown", "type", "field"])
    if kind == "field":  # any field of the schema, present in this suite or not
        fields = list(_schema_paths(Suite))
        path = fields[rng.randrange(len(fields))]
        node = data
        for k in path[:-1]:
            node = node.setdefault(k, {}) if isinstance(node.get(k), dict | None) else {}
        node[path[-1]] = rng.choice(WEIRD)
        return data
    paths = [p for p in _paths(data) if p]
    path = paths[rng.randrange(len(paths))]
    parent = data
    for k in path[:-1]:
        parent = parent[k]
    if kind == "delete":
        del parent[path[-1]]
    elif kind == "unknown" and isinstance(parent, dict):
        parent[rng.choice(["extra", "ℵ", "1"])] = rng.choice(WEIRD)
    elif kind == "type":
        parent[path[-1]] = [parent[path[-1]]] if rng.random() < 0.5 else {"v": parent[path[-1]]}
    else:
        parent[path[-1]] = rng.choice(WEIRD)
    return data


@pytest.mark.parametrize("path", sorted((ROOT / "suites").glob("*.yaml")), ids=lambda p: p.name)
def test_fuzzed_suites_give_one_line_or_a_plan(tmp_path, capsys, path):
    """Random mutations of a shipped suite: exit 2 with one line, or a valid plan; no traceback."""
    import random

    rng = random.Random(path.name)
    text = path.read_text()
    data = yaml.safe_load(text)
    cases = [yaml.safe_dump(_mutate(data, rng), allow_unicode=True).encode() for _ in range(60)]
    cases += [text.encode()[: rng.randrange(len(text))] for _ in range(10)]  # cut off
    cases += [bytes(rng.randrange(256) for _ in range(200)) for _ in range(5)]  # binary
    cases += [text.encode() + b"\n\xff\xfe" + "ünï: ☃\n".encode()]  # bad bytes at the end
    for i, blob in enumerate(cases):
        f = tmp_path / f"case{i}.yaml"
        f.write_bytes(blob)
        code = main(["run", str(f), "--dry-run", "--out", str(tmp_path / "run")])
        out, err = capsys.readouterr()
        assert code in (0, 2), (blob[:300], err[-2000:])
        if code == 2:
            assert err.startswith("error: ") and err.count("\n") == 1, (blob[:300], err)
        else:
            assert out.startswith("suite '") and "stage pairs" in out, (blob[:300], out)
        assert not (tmp_path / "run").exists()


def test_the_documented_suite_examples_are_valid_suites():
    """docs/suites.md's one-example-per-field suite and README's short one parse (the
    documentation cannot rot silently)."""
    from bench.config.suite import parse_suite

    text = (ROOT / "docs" / "suites.md").read_text()
    block = text.split("One example per field group:")[1].split("```yaml")[1].split("```")[0]
    suite = parse_suite(yaml.safe_load(block), "docs/suites.md")
    assert suite.seed_list == (0, 1, 2) and suite.pair.stealth == 1.0
    assert "trigger" in suite.analyses and suite.protocol.random_allocations == 8
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Add a suite")[1].split("```yaml")[1].split("```")[0]
    short = parse_suite(yaml.safe_load(block), "README.md")
    assert short.name == "my-suite" and short.avg_bits == (6.5,)
    closed = readme.split("## Compare your architecture")[1].split("```yaml")[1].split("```")[0]
    assert parse_suite(yaml.safe_load(closed), "README.md").division == "closed"


def test_detrimental_searches_wait_for_robust_ones_only_when_they_read_its_policy():
    from bench.pipeline import plan
    from tests.support.helpers import make_suite

    def waves(suite):  # the modes of each wave of pair searches
        pairs = plan.waves(suite, plan.cells(suite, 10))[2:]
        return [tuple(s.mode for s in w) for w in pairs]

    reads = {"stealth_allocations": ["robust_policy"]}
    assert waves(make_suite()) == [("robust", "detrimental")]
    assert waves(make_suite(pair={**reads, "stealth": 1.0})) == [("robust",), ("detrimental",)]
    searched = make_suite(pair=reads, search={"stealth": {"low": 0.5, "high": 2.0}})
    assert waves(searched) == [("robust",), ("detrimental",)]  # stealth 0 here, > 0 in trials
    assert waves(make_suite(pair={"stealth": 1.0})) == [("robust", "detrimental")]
    [robust, det] = plan.waves(searched, plan.cells(searched, 10))[2:]
    assert det[0].needs == (plan.kd_name(det[0].student, 0), robust[0].name)


def test_a_part_of_the_grid_distils_only_the_students_it_picks():
    """``--cells 'mobilenet*'`` must not spend the CPU distilling the other students."""
    from bench.pipeline import plan
    from tests.support.helpers import make_suite

    suite = make_suite(students=["resnet18", "mobilenetv3_small_100"])
    every = plan.cells(suite, 10)
    part = plan.matching_cells(every, ("mobilenetv3_small_100-*",))
    [teachers, kds, *_] = plan.waves(suite, part)
    assert [s.student for s in kds] == ["mobilenetv3_small_100"] and len(teachers) == 1
    [_, kds, *_] = plan.waves(suite, every)
    assert sorted(s.student for s in kds) == ["mobilenetv3_small_100", "resnet18"]


def test_floor_barred_is_checked_against_every_student_and_budget_before_training():
    from bench.config.suite import SuiteError
    from bench.pipeline import plan
    from tests.support.helpers import make_suite

    assert plan.layer_names(make_suite().students[0], 10) == (
        "3",
        "6",
        "10",
    )  # tests/support/nets.py
    suite = make_suite(pair={"floor_barred": ["6"]})
    assert len(plan.cells(suite, 10)) > 0
    typo = make_suite(pair={"floor_barred": ["66"]})
    with pytest.raises(SuiteError, match=r"^pair\.floor_barred: '66' matches none .*budget \d+\)$"):
        plan.cells(typo, 10)


@pytest.mark.parametrize("path", sorted((ROOT / "suites").glob("*.yaml")), ids=lambda p: p.name)
def test_a_suites_hash_is_computed_from_its_data_alone(path):
    """bench.config.digest hashes a resolved suite's text without building it (how the board's
    views check a record's suite with no torch): the same hash as the built suite; the literal
    teacher augmentation it needs is the teacher stage's default."""
    from bench.config.digest import TEACHER_AUGMENT, digest
    from bench.config.suite import suite_text
    from bench.config.typed_yaml import to_plain
    from dptq.train import TEACHER_DEFAULTS

    suite = load_suite(path)
    assert digest(yaml.safe_load(suite_text(suite))) == suite.digest()
    assert TEACHER_AUGMENT == to_plain(TEACHER_DEFAULTS.augment)
