"""The report for a (tiny) finished pipeline: every table and figure is written."""

import pytest
from PIL import Image

from dptq.pipeline import run_pipeline
from dptq.report import write_report
from tests.test_train import quiet, tiny_config


@pytest.mark.slow
def test_report_writes_every_table_and_figure(tmp_path):
    cfg = tiny_config()
    run_pipeline(cfg, tmp_path, quiet())
    md = write_report(tmp_path, cfg, max_examples=16).read_text()
    for title in ("Table 1", "Table 2", "Table 3", "Fig. 2", "Fig. 3", "Fig. 4"):
        assert title in md
    for png in ("cross_policy", "layer_sweep", "histograms", "corruptions"):
        with Image.open(tmp_path / "report" / f"{png}.png") as im:
            assert im.size[0] > 300 and im.size[1] > 200
    with Image.open(tmp_path / "report" / "transitory.png") as im:  # one row per 8 images
        assert im.size[0] > 300 and im.size[1] > 100
    for csv in ("layer_sweep", "corruptions", "sparsity"):
        assert (tmp_path / "report" / f"{csv}.csv").stat().st_size > 50
