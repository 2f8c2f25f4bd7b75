"""The closed division (bench/closed.py): the standard attack fixed in code, what a closed suite
may set, selection under the protocol on validation, protocol v3, and a closed record verified
as closed."""

import pytest
import yaml

from bench.__main__ import main
from bench.config.closed import ATTACKS, CURRENT, changes
from bench.config.suite import SuiteError, parse_suite, suite_text
from bench.config.typed_yaml import to_plain
from bench.pipeline import plan
from bench.pipeline.search import TrialOutcome, best_of
from bench.pipeline.stages import objective
from bench.records.protocol import INFEASIBLE, judge, selection_score
from bench.records.record import DERIVED, RecordError
from bench.records.verify import parse
from tests.support.records import changed, closed_record, closed_suite, record


def closed(**more) -> dict:
    return {"name": "mine", "division": "closed", "students": ["resnet18"], **more}


@pytest.mark.parametrize(
    "more, field",
    [
        ({"pair": {"lr_student": 0.003}}, "pair.lr_student: fixed by the closed division"),
        ({"search": {"num_samples": 8}}, "search.num_samples: fixed by the closed division"),
        ({"protocol": {"fp_drop_max": 5.0}}, "protocol.fp_drop_max: fixed"),
        ({"avg_bits": [4.0]}, "avg_bits[0]: fixed by the closed division"),
        ({"weight_bits": 8}, "weight_bits: fixed by the closed division"),
        ({"policy_options": {"width": 8}}, "policy_options.width: fixed"),
        ({"recipe": "paper"}, "recipe: fixed by the closed division"),
        ({"share_stages": True}, "share_stages: a closed suite distils each seed's own f_N"),
        ({"students": [{"name": "resnet18", "budgets": [130]}]}, "students[0].budgets:"),
        ({"attack": "closed-v0"}, "attack: unknown version 'closed-v0'; known: closed-v1"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_a_closed_suite_that_sets_what_the_protocol_fixes_is_refused_in_one_line(
    tmp_path, capsys, more, field
):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(closed(**more)))
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"mine.yaml: {field}" in err, err


def test_an_open_suite_may_not_name_an_attack():
    with pytest.raises(SuiteError, match="attack: names the closed division's attack version"):
        parse_suite({"name": "x", "attack": CURRENT}, "x.yaml")


def test_a_closed_suite_of_a_few_lines_gets_the_attack_and_its_datasets_preset():
    """Three lines: the attack's fixed sections (portfolio, selection, cell, protocol v3) and the
    digits preset (the board's teacher and KD, three seeds, one teacher, each seed its own f_N);
    the resolved text reads back as the same suite; a value it repeats is accepted."""
    suite = parse_suite(closed(), "mine.yaml")
    att = ATTACKS[CURRENT]
    assert suite.attack == CURRENT and suite.protocol.version == 3
    assert suite.search.objective == "constrained" and suite.search.select_epoch == "best"
    assert [c.name for c in suite.search.configurations("detrimental")] == [
        c.name for c in att.detrimental
    ]
    assert suite.pair.epochs == att.epochs["digits"] and suite.bit_options == {
        "II": tuple(range(4, 11))
    }
    assert suite.seed_list == (0, 1, 2) and suite.share_stages == "teacher"
    assert suite.kd_stage.epochs == 40 and suite.teacher.name == "resnet18"
    again = parse_suite(yaml.safe_load(suite_text(suite)), "text")
    assert again.digest() == suite.digest()
    assert parse_suite(closed(pair={"epochs": 12}), "m").digest() == suite.digest()
    cells = plan.cells(suite, 10)
    waves = plan.waves(suite, cells)
    assert [s.name for s in waves[0]] == ["teacher-s0"]  # one teacher
    assert [s.name for s in waves[1]] == ["kd-resnet18-s0", "kd-resnet18-s1", "kd-resnet18-s2"]
    assert all(s.needs == ("teacher-s0",) for s in waves[1])
    assert {c.budget for c in cells} == {130}  # 6.5 bits x 20 layers


def test_the_attack_is_literal_data_that_builds_valid_sections():
    """closed-v1 is written out, not read from today's defaults (a later default change must not
    change it); each of its configurations is a valid pair section; its base pair is dptq-v1's
    defaults with the stealth term at gamma 1 (what the shipped digits suites train)."""
    from dptq.pair import PairConfig

    att = ATTACKS[CURRENT]
    base = {k: v for k, v in to_plain(PairConfig(stealth=1.0)).items() if k != "epochs"}
    assert {k: v for k, v in att.pair.items() if k != "epochs"} == base
    suite = parse_suite(closed(), "mine.yaml")
    for c in att.detrimental:
        cfg = suite.pair_config("detrimental", {"configuration": c.name})
        assert all(
            getattr(cfg, k) == (tuple(v) if isinstance(v, list) else v) for k, v in c.pair.items()
        )
    assert changes(to_plain(suite)) == ""


def test_the_open_division_names_what_a_suite_changes():
    suite = parse_suite(
        {"name": "x", "pair": {"epochs": 6}, "seeds": [0, 1], "share_stages": True}, "x"
    )
    text = changes(to_plain(suite), limit=20)
    assert text.startswith("no portfolio, pair.epochs=6")
    assert "protocol.version=2" in text and "f_N shared by the seeds" in text


def _outcome(mode, name, drop, fp, f_n=95.0):
    rules = parse_suite(closed(), "m").protocol
    score = selection_score(mode, drop, fp, f_n, rules)
    return TrialOutcome({"configuration": name}, {"score": score}, None, file=f"{name}.pt")


def test_selection_takes_a_weaker_attack_that_holds_full_precision():
    """Per seed: the strongest trial on validation (drop 60) broke full precision (f_D 5 points
    below f_N); a weaker one (drop 25) held it: the weaker is selected. Where none holds it, the
    smallest shortfall wins; a tie goes to the earlier configuration."""
    trials = [
        _outcome("detrimental", "default", 60.0, 90.0),
        _outcome("detrimental", "lr3e-3", 25.0, 94.5),
        _outcome("detrimental", "capped", 12.0, 95.5),
    ]
    assert best_of(trials).params["configuration"] == "lr3e-3"
    none_hold = [
        _outcome("detrimental", "default", 60.0, 90.0),
        _outcome("detrimental", "lr3e-3", 30.0, 92.5),
    ]
    assert best_of(none_hold).params["configuration"] == "lr3e-3"
    assert none_hold[1].metrics["score"] == pytest.approx(INFEASIBLE - 1.5)
    tie = [_outcome("detrimental", n, 20.0, 95.0) for n in ("default", "lr3e-3")]
    assert best_of(tie).params["configuration"] == "default"
    robust = [_outcome("robust", "a", 3.0, 95.0), _outcome("robust", "b", 0.5, 93.0)]
    assert best_of(robust).params["configuration"] == "a"  # b's small drop broke FP


def test_the_search_objective_of_a_closed_suite_is_the_protocols_selection():
    """Every epoch's score (what Loop.select and the choice between trials read) is
    selection_score: the bound is fp_drop_max - select_margin (2 - 1 points) below f_N."""
    suite = parse_suite(closed(), "m")
    epoch = {"drop": 30.0, "fp_acc": 94.0, "random_acc": 50.0, "uniform_acc": 50.0}
    assert objective("detrimental", epoch, 95.0, suite.search, suite.protocol) == 30.0
    assert objective("detrimental", epoch, 95.5, suite.search, suite.protocol) == INFEASIBLE - 0.5
    assert objective("robust", epoch, 95.0, suite.search, suite.protocol) == -30.0


def test_protocol_v3_judges_full_precision_one_sided_against_f_n():
    """v3: a robust pair that gains accuracy (FP match 3 points) is valid; v2 (every record
    before it) keeps the FP match rule; both refuse f_D 4 points below f_N."""
    gains = closed_record(gap=30.0, f_d_fp=98.5)
    gains_r = changed(gains, f_R={"FP": 1000})  # f_R 100.0 (f_N 99.0), f_D 98.5
    assert gains_r.fp_match == pytest.approx(1.5) and judge(gains_r).valid
    further = changed(gains, f_R={"FP": 1000}, f_D={"FP": 970, "pi_D": 670})  # FP match 3
    assert judge(further).valid and further.fp_match == pytest.approx(3.0)
    v2 = record(gap=30.0, f_d_fp=97.0)  # f_D 97.0, f_R 99.0: FP match 2
    v2_far = changed(v2, f_D={"FP": 970 - 5, "pi_D": 665 - 5})
    assert "FP match 2.50 > 2" in judge(v2_far).reasons
    low = changed(gains, f_D={"FP": 950, "pi_D": 650})
    assert judge(low).reasons == ["f_D FP 4.00 points below f_N (> 2)"]


def test_a_closed_record_is_verified_as_closed():
    rec = closed_record(trials={"default": (60.0, 90.0), "lr3e-3": (25.0, 98.0), "capped": None})
    data = {k: v for k, v in rec.to_json().items()}
    assert parse(data, "r").configuration == {"robust": "control", "detrimental": "lr3e-3"}

    def refused(match, **edit):
        bad = {**data, **edit}
        with pytest.raises(RecordError, match=match):
            parse(bad, "r")

    refused("field git_dirty: a closed record comes from a clean checkout", git_dirty=True)
    refused("field git_dirty", git_dirty=None)
    refused(
        "field configuration.detrimental: 'default', its trials' validation figures select "
        "'lr3e-3'",
        configuration={"robust": "control", "detrimental": "default"},
    )
    rows = [dict(r) for r in data["searches"]["detrimental"]]
    refused(
        "field searches.detrimental: its trials are",
        searches={**data["searches"], "detrimental": rows[:2]},
    )
    rows[1]["val_drop"] = 26.0
    refused(
        r"field searches.detrimental\[1\].score: stored 25.0, its validation figures give",
        searches={**data["searches"], "detrimental": rows},
    )
    refused(
        "field protocol: not its closed suite's",
        protocol={**data["protocol"], "select_margin": 0.0},
    )
    refused("field division: the record says open", division="open", attack=None)
    open_text = suite_text(parse_suite({"name": "closed", "seeds": [0]}, "x"))
    refused("field suite_text: its suite is", suite_text=open_text)


def test_a_closed_suite_text_that_changes_a_fixed_field_is_refused():
    """A record whose suite text says closed but trains another attack (a consistent forgery of
    the suite and its hash) is refused in one line naming the field."""
    rec = closed_record()
    plain = yaml.safe_load(rec.suite_text)
    plain["pair"]["lr_student"] = 0.01
    text = yaml.safe_dump(plain, sort_keys=False)
    data = {k: v for k, v in rec.to_json().items() if k not in DERIVED}
    with pytest.raises(RecordError, match="pair.lr_student: fixed by the closed division"):
        parse({**rec.to_json(), "suite_text": text}, "r")
    assert data["division"] == "closed"


def test_closed_suite_fixture_is_the_current_attack():
    assert closed_suite().attack == CURRENT


@pytest.mark.slow
def test_a_closed_suite_with_a_custom_architecture_runs_and_its_record_verifies_as_closed(
    tmp_path, monkeypatch
):
    """The README's "Compare your architecture": a closed suite naming one's own module (here
    the tests' tiny network, on small digits) runs end to end; every configuration of the
    portfolio is a trial of the record, with its validation figures; the winner is the one the
    protocol's selection gives; the record verifies as closed (a clean checkout: the run's git
    state is set, as a clean clone has it)."""
    import json

    import bench
    from bench.records import build as records_module
    from bench.records.store import load

    monkeypatch.setattr(records_module, "git_state", lambda where: ("ab" * 20, False))
    suite = parse_suite(
        closed(
            name="closed-tiny",
            seeds=[0],
            students=["tests.support.nets:small_net"],
            teacher={"name": "tests.support.nets:small_net"},
            dataset={
                "name": "digits",
                "options": {"image_size": 12, "max_train": 240, "max_test": 60},
            },
            teacher_stage={
                "epochs": 3,
                "batch_size": 16,
                "optimizer": "adamw",
                "lr": 0.02,
                "augment": None,
                "mixup": False,
            },
            kd_stage={
                "epochs": 2,
                "batch_size": 16,
                "optimizer": "adamw",
                "lr": 0.02,
                "augment": None,
                "mixup": False,
            },
            analyses=["pair_scores"],
            resources={"cpus": 2},
        ),
        "closed-tiny.yaml",
    )
    res = bench.run(suite, tmp_path / "run", local=True, leaderboard=None)
    [rec] = res.records
    assert rec.error is None and rec.division == "closed" and rec.attack == CURRENT
    names = [c.name for c in ATTACKS[CURRENT].detrimental]
    assert [t.configuration for t in rec.searches["detrimental"]] == names
    assert [t.configuration for t in rec.searches["robust"]] == ["control"]
    rows = rec.searches["detrimental"]
    won = max(range(len(rows)), key=lambda i: (round(rows[i].score, 6), -i))
    assert rec.configuration["detrimental"] == names[won]
    for t in rows:
        assert t.score == selection_score(
            "detrimental", t.val_drop, t.val_fp_acc, rec.f_n_val_acc, rec.protocol
        )
        assert t.epochs == ATTACKS[CURRENT].epochs["digits"]
    assert rec.protocol.version == 3 and rec.git_dirty is False
    [again] = load(tmp_path / "run")
    path = tmp_path / "run" / "records" / f"{rec.id}.json"
    assert parse(json.loads(path.read_text()), "r").configuration == rec.configuration
    assert again.id == rec.id
