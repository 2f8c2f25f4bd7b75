"""The report of a (tiny) finished run: every registered analysis writes its table and figure."""

import pytest
from PIL import Image

from bench.pipeline.run import run_suite
from bench.records.verify import parse
from dptq.analyses import ANALYSES
from dptq.transfer import SCHEMES
from tests.support.helpers import tiny_suite


@pytest.mark.slow
def test_report_writes_every_table_and_figure(tmp_path):
    suite = tiny_suite(
        analyses=list(ANALYSES),
        analysis_examples=16,
        audit={"epochs": 1},
        defenses={"finetune_steps": 2, "noise_scales": [0.05]},
    )
    [rec] = run_suite(suite, tmp_path, local=True).records
    report = (tmp_path / rec.report).parent
    md = (report / "report.md").read_text()
    assert "<table>" in (report / "report.html").read_text()  # the page the board links to
    for title in ("Table 1", "Table 2", "Table 3", "Fig. 2", "Fig. 3", "Fig. 4"):
        assert title in md
    for png in ("cross_policy", "layer_sweep", "histograms", "corruptions"):
        with Image.open(report / f"{png}.png") as im:
            assert im.size[0] > 300 and im.size[1] > 200
    with Image.open(report / "transitory.png") as im:  # one row per 8 images
        assert im.size[0] > 300 and im.size[1] > 100
    for csv in ("layer_sweep", "corruptions", "sparsity"):
        assert (report / f"{csv}.csv").stat().st_size > 50
    # the deployer's analyses: sections, figures and record fields (validated like any record)
    for title in ("Audit: a policy-only attack on f_N", "Quantizer transfer", "Defenses"):
        assert title in md
    for png in ("audit_bits", "audit_sweep", "transfer", "defenses"):
        with Image.open(report / f"{png}.png") as im:
            assert im.size[0] > 300 and im.size[1] > 200
    transfer, defenses, audit = (
        rec.analysis(n) for n in ("quantizer_transfer", "defenses", "audit")
    )
    assert [r.scheme for r in transfer.schemes] == list(SCHEMES)  # in the order measured
    assert {r.name for r in defenses.rows} == {
        "none",
        "finetune",
        "noise 0.05",
        "percentile 99.9",
        "uniform allocation",
    }
    assert defenses.gap("none") == rec.gap  # exact counts: the same examples, the same gap
    assert transfer.gap("minmax") == rec.gap
    assert audit.fp == rec.evaluation.f_N.FP and audit.total == rec.evaluation.total
    assert audit.policy_only_drop == 100 * (audit.fp - audit.adversarial) / audit.total
    assert sum(audit.mean_bits) == pytest.approx(rec.budget)
    assert parse(rec.to_json(), "tiny record") == rec


@pytest.mark.slow
def test_analyses_selects_exactly_what_runs(tmp_path):
    suite = tiny_suite(analyses=["cross_policy"])
    [rec] = run_suite(suite, tmp_path, local=True).records
    report = (tmp_path / rec.report).parent
    md = (report / "report.md").read_text()
    assert "Table 3" in md and "Table 1" not in md and "Table 2" not in md
    files = sorted(p.name for p in report.iterdir())
    assert files == ["cross_policy.png", "report.html", "report.md"]
    assert rec.evaluation is not None and rec.analysis("transitory") is None
