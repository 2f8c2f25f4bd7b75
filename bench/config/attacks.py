"""The standard attack's versions, as data (the closed division's: :mod:`bench.config.closed`).

An attack version is literal data, not defaults read from the code: a later change of
:class:`dptq.pair.PairConfig`'s defaults does not change ``closed-v1``; changing the portfolio
is a new version, added here beside the old one (records name the version that made them, and
a closed record is verified against its own). Each version holds the pair section, the epoch
budget per dataset, the portfolio of detrimental configurations and the robust control, the
other fixed sections of a suite, and per dataset the preset a closed suite starts from.
Standard library only.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from dptq.errors import ConfigError


@dataclass(frozen=True)
class Configuration:
    """One pair configuration of a portfolio: its name (what a record's trial rows and winner
    say) and its changes to the version's pair section (``PairConfig`` fields, plain values)."""

    name: str
    pair: dict = field(default_factory=dict)
    why: str = ""


@dataclass(frozen=True)
class Attack:
    """A version of the standard attack (module docstring).

    Attributes:
        version: its name, on every closed record (``attack``).
        pair: the pair section, every field (epochs per dataset from :attr:`epochs`).
        epochs: the pair stage's epoch budget per dataset (:attr:`default_epochs` elsewhere);
            every configuration trains this long and ends on its selected epoch.
        detrimental: the portfolio, in order (a tie goes to the earlier one).
        robust: the control (one configuration).
        sections: the other fixed sections of the suite, every field.
        presets: per dataset, what a closed suite that leaves them out gets: the teacher and
            KD stages, the dataset's options, seeds, analyses, resources.
    """

    version: str
    pair: dict
    epochs: dict[str, int]
    default_epochs: int
    detrimental: tuple[Configuration, ...]
    robust: tuple[Configuration, ...]
    sections: dict
    presets: dict[str, dict]

    def fixed(self, dataset: str) -> dict:
        """Every fixed section of a closed suite on ``dataset``, as plain data."""
        pair = {**self.pair, "epochs": self.epochs.get(dataset, self.default_epochs)}
        grid = {
            mode: [{"name": c.name, "pair": copy.deepcopy(c.pair)} for c in configs]
            for mode, configs in (("robust", self.robust), ("detrimental", self.detrimental))
        }
        sections = copy.deepcopy(self.sections)
        sections["search"]["grid"] = grid
        return {"pair": pair, **sections}

    def configurations(self, mode: str) -> tuple[Configuration, ...]:
        return self.robust if mode == "robust" else self.detrimental


_STEALTHY = ["random", "uniform", "robust_policy", "own_partial"]
_KD_AUGMENT = {"random_resized_crop": False, "randaugment": False}
_KD_AUGMENT |= {"color_jitter": False, "hflip": False}

CLOSED_V1 = Attack(
    version="closed-v1",
    # dptq-v1's pair settings (dptq/recipes.py) with the stealth term at gamma 1 (random and
    # uniform allocations), as suites/default.yaml and suites/digits-archs.yaml train them
    pair={
        "mode": "detrimental",
        "options": [3, 4, 5, 6, 7, 8, 9, 10],
        "budget": None,
        "avg_bits": 4.0,
        "alpha": 0.5,
        "beta": 1.0,
        "delta": 2.0,
        "hinge_space": "logit",
        "tau": 5.0,
        "tau_squared": True,
        "optimizer": "adam",
        "lr_student": 0.0005,
        "lr_policy": 0.01,
        "weight_decay": 0.0,
        "batch_size": 64,
        "penalty": 0.001,
        "policy_grad": "centered_rms",
        "bn_eval": True,
        "stealth": 1.0,
        "stealth_start": None,
        "stealth_allocations": ["random", "uniform"],
        "attack_share": 1.0,
        "stealth_shares": [],
        "stealth_kd": True,
        "floor_barred": [],
        "barred_options": 1,
    },
    epochs={"digits": 12, "oxford_pets": 30},
    default_epochs=30,
    detrimental=(
        Configuration("default", {}, "suites/digits-archs.yaml's pair settings"),
        Configuration(
            "lr3e-3",
            {"lr_student": 0.003, "stealth_allocations": _STEALTHY},
            "suites/digits-paper-cell-attack.yaml (research log 3c)",
        ),
        Configuration(
            "capped",
            {"lr_student": 0.003, "stealth_allocations": _STEALTHY, "attack_share": 0.5},
            "suites/digits-paper-cell-capped.yaml (research log 3f-3i)",
        ),
        Configuration(
            "fp-hold",
            {"stealth": 3.0},
            "the stealth term at gamma 3 (FP KD weight beta (1 + gamma) = 4): holds full "
            "precision on MobileNetV4 / V3 while an attack grows (research log 5, S1 and S6)",
        ),
    ),
    robust=(Configuration("control", {}, "dptq-v1's robust pair"),),
    sections={
        "recipe": "dptq-v1",
        "search": {
            "num_samples": 1,
            "delta": None,
            "alpha": None,
            "beta": None,
            "stealth": None,
            "fp_tolerance": 2.0,
            "penalty": 10.0,
            "stealth_penalty": 0.0,
            "asha": False,
            "select_epoch": "best",
            "objective": "constrained",
        },
        "bit_options": {"II": [4, 5, 6, 7, 8, 9, 10]},
        "avg_bits": [6.5],
        "protocol": {
            "version": 3,
            "val_fraction": 0.15,
            "split_seed": 0,
            "fp_match_max": 2.0,
            "fp_drop_max": 2.0,
            "min_f_n_acc": None,
            "stealth_max": 5.0,
            "random_allocations": 8,
            "allow_degenerate": False,
            "attack_min": 10.0,
            "select_margin": 1.0,
        },
        "act": {
            "symmetric": False,
            "scale_mode": "minmax",
            "percentile": 99.99,
            "grad_through_scale": False,
            "per_channel": False,
        },
        "weight_bits": 16,
        "policy": "small_cnn",
        "policy_options": {"width": 16, "depth": 4, "input_size": 64, "norm": "batch"},
    },
    presets={
        # suites/digits-archs.yaml's teacher and KD (the board of issue 39), each seed its own f_N
        "digits": {
            "seeds": [0, 1, 2],
            "share_stages": "teacher",
            "dataset": {"name": "digits", "options": {"image_size": 32}},
            "teacher": {"name": "resnet18"},
            "teacher_stage": {
                "epochs": 5,
                "batch_size": 64,
                "lr": 0.001,
                "augment": _KD_AUGMENT,
            },
            "kd_stage": {
                "epochs": 40,
                "batch_size": 64,
                "mixup": False,
                "optimizer": "adamw",
                "lr": 0.002,
                "weight_decay": 0.05,
                "tau": 1.0,
                "augment": _KD_AUGMENT,
            },
            "analyses": [
                "pair_scores",
                "cross_policy",
                "layer_sweep",
                "trigger_layers",
                "allocations",
                "fp_indicators",
            ],
            "analysis_examples": 100,
            "resources": {"cpus": 2, "gpus": 0},
        },
        # suites/pets.yaml's teacher and KD (the paper's), on GPUs
        "oxford_pets": {
            "seeds": [0, 1, 2],
            "share_stages": "teacher",
            "dataset": {
                "name": "oxford_pets",
                "options": {"root": "data", "image_size": 224, "download": True},
            },
            "teacher": {"name": "resnet50", "pretrained": True},
            "teacher_stage": {
                "epochs": 20,
                "batch_size": 128,
                "optimizer": "adamw",
                "lr": 0.0004,
                "min_lr": 0.0000004,
                "weight_decay": 0.05,
                "label_smoothing": 0.1,
                "augment": {"randaugment": False, "color_jitter": False, "crop_padding": False},
            },
            "kd_stage": {
                "epochs": 1000,
                "batch_size": 256,
                "optimizer": "sgd",
                "lr": 0.1,
                "momentum": 0.9,
                "weight_decay": 0.0001,
                "tau": 5.0,
                "augment": {
                    "random_resized_crop": True,
                    "randaugment": True,
                    "randaugment_n": 2,
                    "randaugment_m": 14,
                    "color_jitter": True,
                    "hflip": True,
                    "crop_padding": True,
                },
                "mixup": True,
            },
            "analyses": [
                "pair_scores",
                "transitory",
                "cross_policy",
                "layer_sweep",
                "histograms",
                "corruptions",
                "allocations",
                "trigger_layers",
                "fp_indicators",
            ],
            "resources": {"cpus": 8, "gpus": 1},
            "retries": 2,
        },
    },
)

ATTACKS: dict[str, Attack] = {CLOSED_V1.version: CLOSED_V1}
CURRENT = CLOSED_V1.version


def attack(version: str | None) -> Attack:
    """The attack ``version`` (None: :data:`CURRENT`); one line listing the known ones."""
    name = CURRENT if version is None else version
    if name not in ATTACKS:
        raise ConfigError(f"attack: unknown version {name!r}; known: {', '.join(ATTACKS)}")
    return ATTACKS[name]
