"""Research driver for the digits target (issue 3): one pipeline run with overrides, logged.

    python scripts/research_digits.py OUT_DIR '{"pair": {"alpha": 0.5}}'

Teacher and KD checkpoints are reused when OUT_DIR already has them (copy a finished run's
teacher.pt / kd.pt into a new folder to try another pair recipe on the same f_N).
"""

import json
import sys
import time
from dataclasses import replace

from dptq.data import AugmentConfig
from dptq.engine import RunOptions
from dptq.pair import PairConfig
from dptq.pipeline import PipelineConfig, run_pipeline
from dptq.train import TEACHER_DEFAULTS, StageConfig

DIGITS_KD_AUG = AugmentConfig(
    random_resized_crop=False,
    randaugment=True,
    randaugment_m=9,
    color_jitter=False,
    hflip=False,
    crop_padding=True,
)


def config(over: dict) -> PipelineConfig:
    base = PipelineConfig(
        teacher="resnet18",
        student="resnet18",
        teacher_stage=replace(
            TEACHER_DEFAULTS,
            epochs=15,
            batch_size=64,
            lr=1e-3,
            augment=AugmentConfig(
                random_resized_crop=False, randaugment=False, color_jitter=False, hflip=False
            ),
        ),
        kd_stage=StageConfig(epochs=30, batch_size=64, lr=0.05, augment=DIGITS_KD_AUG),
        pair=PairConfig(**over.get("pair", {})),
        seed=over.get("seed", 0),
    )
    return base


if __name__ == "__main__":
    out, over = sys.argv[1], json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")
    t = time.time()
    res = run_pipeline(config(over), out, RunOptions(seed=over.get("seed", 0), progress=True))
    keep = ("fp_acc", "q_acc", "drop", "random_acc", "uniform_acc")
    print(
        json.dumps(
            {
                "overrides": over,
                "minutes": round((time.time() - t) / 60, 1),
                "teacher": res["teacher"],
                "kd": res["kd"],
                "summary": res.get("summary"),
                "robust": {k: res["robust"][k] for k in keep},
                "detrimental": {k: res["detrimental"][k] for k in keep},
                "cross_policy": res["cross_policy"],
            },
            indent=1,
        )
    )
