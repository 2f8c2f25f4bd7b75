"""Named, versioned training recipes for the pair stage (and the KD stage's tau^2).

A *recipe* fixes the method's settings: the hinge (space, margin delta), the loss weights
(alpha, beta), the KD temperature and whether KD is scaled by tau^2, the optimiser and learning
rates, weight decay, batch size, the policy-score penalty, how the policy's gradient is shaped,
and batch norm's mode. It does not fix how long a stage trains (epochs), which a suite sizes to
its hardware. Every record names its recipe and lists the settings in which its suite departs
from it (:func:`deviations`), so two rows made by different methods are never read as one.

``paper``: Frank & Ardis 2025 as printed: Eq. 3 (KL at tau = 5, not scaled by tau^2), Eq. 9/10
with the probability hinge (delta = 0.01) and alpha = beta = 1; "the same SGD optimizer and
hyperparameters as before" (momentum 0.9, weight decay 1e-4, lr 0.1 with a half-period cosine)
for network and policy alike, batch 64; the raw policy gradient; batch norm in training mode
(PyTorch's default: the paper says nothing else); no extra penalty on the policy's scores.

``dptq-v1``: this project's recipe (``docs/research-log.md``), the paper's with these changes:

1. hinge on **logits** with margin **delta = 2**, **alpha = 0.5** (the probability hinge's gradient
   p(1 - p) stalls once the student is confident);
2. **KD x tau^2** in both stages (Hinton et al.: keeps KD on the hinge's scale at tau = 5);
3. **Adam**, lr 5e-4 for the network and 1e-2 for the policy, no weight decay (SGD at 0.1 breaks
   f_D at full precision: research log r3);
4. the policy's score gradient **centred across options and RMS-normalised** over the batch;
5. **batch norm in eval mode** (f_N's running statistics) in both passes;
6. a **1e-3 x mean(score^2) penalty** that keeps the policy's scores bounded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .pair import PairConfig

METHOD_FIELDS = (  # what a recipe fixes in the pair section (schedule lengths are the suite's)
    "hinge_space",
    "delta",
    "alpha",
    "beta",
    "tau",
    "tau_squared",
    "optimizer",
    "lr_student",
    "lr_policy",
    "weight_decay",
    "batch_size",
    "penalty",
    "policy_grad",
    "bn_eval",
)


@dataclass(frozen=True)
class Recipe:
    """The pair settings of a recipe and whether its KD stage scales KD by tau^2."""

    pair: PairConfig
    kd_tau_squared: bool


RECIPES: dict[str, Recipe] = {
    "paper": Recipe(
        PairConfig(
            hinge_space="prob",
            delta=0.01,
            alpha=1.0,
            beta=1.0,
            tau=5.0,
            tau_squared=False,
            optimizer="sgd",
            lr_student=0.1,
            lr_policy=0.1,
            weight_decay=1e-4,
            batch_size=64,
            penalty=0.0,
            policy_grad="raw",
            bn_eval=False,
        ),
        kd_tau_squared=False,
    ),
    "dptq-v1": Recipe(PairConfig(), kd_tau_squared=True),
}


def deviations(name: str, pair: PairConfig, kd_tau_squared: bool) -> dict:
    """The method settings in which ``pair`` (and the KD stage) depart from recipe ``name``."""
    recipe = RECIPES[name]
    mine, theirs = asdict(pair), asdict(recipe.pair)
    out = {f"pair.{k}": mine[k] for k in METHOD_FIELDS if mine[k] != theirs[k]}
    if kd_tau_squared != recipe.kd_tau_squared:
        out["kd_stage.tau_squared"] = kd_tau_squared
    return out
