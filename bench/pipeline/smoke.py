"""``--smoke``: every cell and stage of a suite, a couple of steps each, on synthetic images.

:func:`smoke_suite` turns a suite into its smoke version: the same architectures (with their
options), bit options, budgets and analyses, the same image size and class count, but a
few synthetic images (:mod:`dptq.data.synthetic`), one epoch of two steps per stage, one trial per
search, the first seed, and small analyses (a few examples, a few layers per sweep, short audit
and defense settings). It runs through the same runner into its own run folder and is never
added to a leaderboard: what it catches is a shape, budget, dtype, memory or import error, hours
before the real run would reach it. What it shrinks is listed by :func:`describe`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dptq.data import SyntheticOptions

from ..config.sections import Dataset, Resources
from ..config.suite import Suite, SuiteError

# classes of the registered datasets, known without reading them (the smoke run never downloads)
CLASSES = {"digits": 10, "oxford_pets": 37, "cifar10": 10, "cifar100": 100}
STEPS = 2  # training steps per stage
CPU_BATCH = 2  # batch size of every stage on a machine without a GPU, at least (bn_batch)
BN_VALUES = (
    16  # values per channel a batch norm layer sees at a network's stride-32 stage, at least
)
EXAMPLES = 1  # examples per split of the analyses
SWEEP_LAYERS = 2  # layers per sweep: the first and the last
DEGREES = (0, 5)  # corruption degrees: clean and the strongest (every corruption still runs)


def num_classes(suite: Suite) -> int:
    """The class count of the suite's dataset, without loading it."""
    ds = suite.dataset
    if ds.name == "synthetic":
        return ds.options.num_classes
    if ds.name in CLASSES:
        return CLASSES[ds.name]
    train = Path(getattr(ds.options, "root", "data")) / "train"
    if train.is_dir():  # imagefolder: its class folders
        return max(2, sum(p.is_dir() for p in train.iterdir()))
    raise SuiteError(
        f"dataset.name {ds.name!r}: the smoke run cannot tell its number of classes without "
        f"reading it ({train} not found); add it to bench.pipeline.smoke.CLASSES"
    )


def bn_batch(image_size: int) -> int:
    """The smallest CPU smoke batch at which batch norm's statistics are not degenerate.

    A classifier's last stages run at stride 32: at 32 px their maps are 1 x 1, so in training
    mode a batch norm layer there normalises over ``batch`` values per channel. Over 2 values its
    variance is tiny and its gradient (~1/sigma) compounds through the depth: measured here, one
    KD step at batch 2 sent EfficientNet-B0's and MobileNetV4's gradient norms to 1e5-1e11
    (weights to 1e6 or NaN; the pair stage then reported a NaN loss), at batch 16 to ~500, as at
    batch 64. The batch is chosen so that ``batch x (image_size / 32)^2 >= BN_VALUES``: 16 at
    32 px, 4 at 64, 2 at 224.
    """
    cells = max(1, image_size // 32) ** 2
    return max(CPU_BATCH, -(-BN_VALUES // cells))


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def smoke_suite(suite: Suite, gpu: bool | None = None) -> Suite:
    """The smoke version of ``suite`` (module docstring). ``gpu``: keep the suite's batch sizes
    and GPUs (default: when this machine has a GPU); otherwise a small batch (:func:`bn_batch`) on
    one CPU per trial."""
    gpu = _has_gpu() if gpu is None else gpu
    batch = {
        "teacher": suite.teacher_stage.batch_size,
        "kd": suite.kd_stage.batch_size,
        "pair": suite.pair.batch_size,
    }
    if not gpu or suite.resources.gpus == 0:
        small = bn_batch(suite.dataset.options.image_size)
        batch = {k: min(v, small) for k, v in batch.items()}
    val = suite.protocol.val_fraction
    train_size = int(STEPS * max(batch.values()) / (1 - val)) + 1  # two steps once val is held out
    options = SyntheticOptions(
        image_size=suite.dataset.options.image_size,
        num_classes=num_classes(suite),
        train_size=train_size,
        test_size=STEPS,
        seed=suite.seed_list[0],
    )
    resources = suite.resources
    if (
        not gpu
    ):  # one core per trial: at a small batch a second thread adds little, a second trial 2x
        resources = Resources(cpus=1.0, gpus=0.0)
    return replace(
        suite,
        name=f"{suite.name}-smoke"[:64],
        seed=suite.seed_list[0],
        seeds=None,
        dataset=Dataset("synthetic", options),
        teacher=replace(suite.teacher, pretrained=False),
        students=tuple(replace(s, pretrained=False) for s in suite.students),
        teacher_stage=replace(suite.teacher_stage, epochs=1, batch_size=batch["teacher"]),
        kd_stage=replace(suite.kd_stage, epochs=1, batch_size=batch["kd"]),
        pair=replace(suite.pair, epochs=1, batch_size=batch["pair"]),
        search=replace(suite.search, num_samples=1, asha=False),
        protocol=replace(suite.protocol, random_allocations=2),
        analysis_examples=EXAMPLES,
        sweep_layers=SWEEP_LAYERS,
        corruption_degrees=DEGREES,
        audit=replace(
            suite.audit,
            epochs=1,
            batch_size=min(suite.audit.batch_size, batch["pair"]),
            oracle_steps=min(suite.audit.oracle_steps, STEPS),
        ),
        defenses=replace(
            suite.defenses,
            finetune_steps=min(suite.defenses.finetune_steps, STEPS),
            finetune_batch_size=min(suite.defenses.finetune_batch_size, batch["pair"]),
            noise_scales=suite.defenses.noise_scales[:1],
        ),
        resources=resources,
        retries=0,
        # a closed suite's smoke changes what the attack fixes (epochs, batch): an open run, and
        # never a record of the closed division
        division="open",
        attack=None,
    )


def describe(suite: Suite, smoke: Suite) -> str:
    """What the smoke run keeps and what it shrinks (printed before it starts)."""
    o = smoke.dataset.options
    return (
        f"smoke run of '{suite.name}': every student, bit-option version, budget, mode, stage and "
        f"analysis; {o.train_size} synthetic training and {o.test_size} test images at "
        f"{o.image_size} px, {o.num_classes} classes; 1 epoch per stage (batch "
        f"{smoke.pair.batch_size} for the pairs), 1 trial per search (a grid: 1 per configuration), "
        f"seed {smoke.seed} only, "
        f"{EXAMPLES} examples, {SWEEP_LAYERS} layers per sweep and corruption degrees "
        f"{list(DEGREES)} in the analyses; "
        f"resources {smoke.resources.cpus:g} CPU, {smoke.resources.gpus:g} GPU per trial. "
        "The numbers it prints mean nothing; it never touches a leaderboard."
    )
