"""Ready-made pipeline configurations (the suite files of issue 5 will supersede them).

``digits``: the built-in setting that needs no download: resnet18 teacher and student at 32x32 on
scikit-learn's digits, the logit-hinge recipe of ``docs/research-log.md`` for the pairs.
"""

from __future__ import annotations

import difflib
from dataclasses import fields, replace

from dptq.data import AugmentConfig
from dptq.pair import PairConfig
from dptq.pipeline import PipelineConfig
from dptq.train import TEACHER_DEFAULTS, StageConfig

NO_AUG = dict(random_resized_crop=False, randaugment=False, color_jitter=False, hflip=False)


def digits(
    pair: dict | None = None,
    seed: int = 0,
    student: str = "resnet18",
    teacher: str = "resnet18",
    kd_epochs: int = 30,
    teacher_epochs: int = 15,
) -> PipelineConfig:
    """The digits preset; ``pair`` overrides fields of :class:`dptq.pair.PairConfig`."""
    known = [f.name for f in fields(PairConfig)]
    for key in pair or {}:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean '{near[0]}'?" if near else f"known: {', '.join(known)}"
            raise ValueError(f"pair.{key}: unknown field; {hint}")
    return PipelineConfig(
        dataset="digits",
        dataset_options={"image_size": 32},
        teacher=teacher,
        student=student,
        teacher_stage=replace(
            TEACHER_DEFAULTS,
            epochs=teacher_epochs,
            batch_size=64,
            lr=1e-3,
            augment=AugmentConfig(**NO_AUG),
        ),
        kd_stage=StageConfig(
            epochs=kd_epochs,
            batch_size=64,
            lr=0.05,
            augment=AugmentConfig(
                random_resized_crop=False, randaugment_m=9, color_jitter=False, hflip=False
            ),
        ),
        pair=PairConfig(**(pair or {})),
        seed=seed,
    )


PRESETS = {"digits": digits}
