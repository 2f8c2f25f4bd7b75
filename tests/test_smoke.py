"""``python -m bench run SUITE --smoke``: every cell, stage and analysis, a couple of steps each."""

from __future__ import annotations

import json

import pytest

from bench.__main__ import main
from bench.config.suite import load_suite
from bench.names import kd_name, slug
from bench.pipeline import plan
from bench.pipeline.smoke import smoke_suite
from tests.support.helpers import ROOT, SUITES, make_suite, suite_data

PETS = ["pets.yaml", "pets-paper.yaml"]


def _records(run_dir):
    return [json.loads(p.read_text()) for p in sorted((run_dir / "records").rglob("*.json"))]


@pytest.mark.parametrize("name", PETS)
def test_smoke_suite_keeps_every_cell_and_analysis(name):
    suite = load_suite(ROOT / "suites" / name)
    smoke = smoke_suite(suite, gpu=False)
    first = suite.seed_list[0]
    assert {c.key for c in plan.cells(smoke, 37)} == {
        c.key for c in plan.cells(suite, 37) if c.seed == first
    }
    assert len(plan.cells(smoke, 37)) == 27  # 3 students x 3 versions x 3 budgets
    assert smoke.analyses == suite.analyses
    opts = smoke.dataset.options
    assert smoke.dataset.name == "synthetic" and opts.num_classes == 37
    assert opts.image_size == suite.dataset.options.image_size == 224
    assert not smoke.teacher.pretrained and smoke.name == f"{suite.name}-smoke"
    assert smoke.pair.epochs == smoke.kd_stage.epochs == 1 and smoke.search.num_samples == 1
    assert smoke.resources.gpus == 0
    # the real run's own settings are what it checks
    assert smoke.pair.delta == suite.pair.delta and smoke.pair.hinge_space == suite.pair.hinge_space


def test_smoke_is_never_submitted(tmp_path, capsys):
    code = main(["run", "suites/default.yaml", "--smoke", "--submit", "--out", str(tmp_path / "r")])
    assert code == 2
    assert "never submitted" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def _check_smoke(out, text, cells: int) -> None:
    records = _records(out)
    assert len(records) == cells and all(r["error"] is None for r in records)
    for r in records:  # every stage and analysis reached the record
        assert r["gap"] is not None and r["evaluation"]["total"] >= 1
        assert set(r["analyses"]) >= {"corruptions", "quantizer_transfer", "defenses", "audit"}
        assert r["analyses"]["allocations"]["f_D"]["distinct"] >= 1
        assert r["analyses"]["trigger_layers"]["examples"] >= 1
    assert f"smoke passed: {cells} cell(s)" in text
    assert "[analyse " in text and "audit (9/11)" in text  # a line per analysis
    assert not list((ROOT / "leaderboard" / "records").glob("pets*"))
    assert not list(out.rglob("*.pt"))  # checkpoints deleted (~12 GB at 224 px), reports kept
    assert len(list(out.rglob("report.md"))) == cells


@pytest.mark.slow
def test_pets_suite_passes_smoke_on_the_cpu(tmp_path, capfd):
    """Every student x bit-option version of the paper's grid at 224 px, 37 classes, every stage
    and analysis, at the version's smallest budget (the most layers at the floor). The grid's other
    18 cells differ from these only in the budget, which planning checks for every cell
    (test_smoke_suite_keeps_every_cell_and_analysis); running them too tripled CI's longest test
    (911 s on 2 cores) for no other code path. capfd: the analyses print from worker processes."""
    from dataclasses import replace

    from bench.pipeline.run import run

    suite = load_suite(ROOT / "suites" / "pets.yaml")
    cut = replace(
        suite,
        students=tuple(
            replace(st, budgets={v: b[:1] for v, b in st.budgets.items()}) for st in suite.students
        ),
    )
    out = tmp_path / "run"
    from bench.executors.events import to_stdout

    to_stdout()
    res = run(cut, out, local=True, smoke=True)
    text = capfd.readouterr().out + res.smoke_verdict()
    assert res.exit_code == 0, text[-3000:]
    firsts = {(st.name, v, b[0]) for st in suite.students for v, b in st.budgets.items()}
    assert {(r.architecture, r.bit_options, r.budget) for r in res.records} == firsts
    _check_smoke(out, text, 9)


@pytest.mark.slow
def test_pets_paper_suite_passes_smoke_at_its_highlighted_cell(tmp_path, capfd):
    """The paper's recipe at its highlighted cell (ResNet18, options II, budget 130), every stage
    and analysis. Its other students are the pets suite's, smoked above at 224 px; a cell of
    theirs here ran the same code paths again (421 s for three cells, 2 cores)."""
    from dataclasses import replace

    from bench.pipeline.run import run

    suite = load_suite(ROOT / "suites" / "pets-paper.yaml")
    [resnet] = [st for st in suite.students if st.name == "resnet18"]
    cut = replace(
        suite,
        bit_options={"II": suite.bit_options["II"]},
        students=(replace(resnet, budgets={"II": resnet.budgets["II"][1:2]}),),
    )
    out = tmp_path / "run"
    from bench.executors.events import to_stdout

    to_stdout()
    res = run(cut, out, local=True, smoke=True)
    text = capfd.readouterr().out + res.smoke_verdict()
    assert res.exit_code == 0, text[-3000:]
    assert [(r.architecture, r.budget) for r in res.records] == [("resnet18", 130)]
    _check_smoke(out, text, 1)


@pytest.mark.slow
def test_vit_and_convnext_students_pass_smoke_through_ray(tmp_path, capsys):
    """timm keyword arguments per student; Linear layers quantized like convolutions."""
    out = tmp_path / "run"
    code = main(["run", str(SUITES / "modern.yaml"), "--smoke", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text[-3000:]
    records = _records(out)
    assert sorted(r["architecture"] for r in records) == ["convnext_atto", "vit_tiny_patch16_224"]
    assert all(r["error"] is None and r["num_layers"] > 8 for r in records)


@pytest.mark.slow
def test_a_broken_cell_fails_smoke_naming_it(tmp_path, capsys):
    """A student written for 12 px in a 16 px suite: its cells fail, named; the others pass."""
    data = suite_data(
        "tiny",
        students=["tests.support.nets:small_net", "tests.support.faulty:fixed_size_net"],
        dataset__options={"image_size": 16},
        analyses=["pair_scores"],
    )
    path = tmp_path / "broken.yaml"
    import yaml

    path.write_text(yaml.safe_dump(data))
    code = main(["run", str(path), "--smoke", "--local", "--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert code == 1
    assert "smoke FAILED" in out and f"{slug('tests.support.faulty:fixed_size_net')}-I-" in out
    assert (
        f"FAILED {kd_name('tests.support.faulty:fixed_size_net', 0)}: RuntimeError: mat1 and mat2"
        in err
    )
    records = _records(tmp_path / "run")
    good = [r for r in records if r["error"] is None]
    assert [r["architecture"] for r in good] == ["tests.support.nets:small_net"]


def test_the_cpu_smoke_batch_gives_batch_norm_enough_values():
    """At 32 px a network's stride-32 maps are 1 x 1: batch 2 left batch norm two values per
    channel and EfficientNet's KD step diverged (bench.pipeline.smoke.bn_batch); at 224 px they are 7 x 7."""
    from bench.pipeline.smoke import BN_VALUES, bn_batch

    for size in (32, 64, 96, 224):
        small = smoke_suite(make_suite(dataset__options={"image_size": size}), gpu=False)
        assert small.pair.batch_size == small.kd_stage.batch_size == bn_batch(size)
        assert bn_batch(size) * max(1, size // 32) ** 2 >= BN_VALUES
    assert bn_batch(224) == 2 and bn_batch(32) == BN_VALUES


@pytest.mark.slow
def test_the_digits_architecture_board_passes_smoke(tmp_path, capsys):
    """Every architecture of suites/digits-archs.yaml at 32 px (the Table 1 suites' three
    students among them), every stage and analysis. EfficientNet-B0 failed its pair stages here
    with a NaN loss: its KD stage, at batch 2, had sent the weights to 1e6 (gradient norms 1e5;
    MobileNetV3/V4 diverged the same way); MobileViT's transformer folds its patches into the
    batch, which per-example bits did not follow (``dptq.models._per_example_view``)."""
    suite = ROOT / "suites" / "digits-archs.yaml"
    out = tmp_path / "run"
    code = main(["run", str(suite), "--smoke", "--seeds", "0", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text[-3000:]
    students = {st.name for st in load_suite(suite).students}
    assert f"smoke passed: {len(students)} cell(s)" in text
    records = _records(out)
    assert {r["architecture"] for r in records} == students
    assert all(r["error"] is None for r in records)
    for table1 in ("digits-table1.yaml", "digits-table1-highlight.yaml"):
        assert {st.name for st in load_suite(ROOT / "suites" / table1).students} <= students
