"""The analyses: each maps a trained cell to a report section and (where it declares them) record
fields. :mod:`dptq.analyses.registry` holds the registry and runs them; the paper's analyses are
in :mod:`dptq.analyses.paper`, the policies' allocations and f_D's trigger layers in
:mod:`dptq.analyses.policy`, the deployer's in :mod:`dptq.analyses.deployer`, the full-precision indicators in
:mod:`dptq.analyses.indicators`. Importing this
package registers them all, and loads neither torch nor pandas (the views read the declarations).
"""

# each registers its analyses; the paper's first: the registry's order is the report's
from . import paper  # noqa: F401

# isort: split
from . import policy  # noqa: F401

# isort: split
from . import deployer  # noqa: F401

# isort: split
from . import indicators  # noqa: F401

# isort: split
from .deployer import (
    AuditFields,
    DefenseFields,
    DefenseRow,
    SchemeLoss,
    StarvedLayer,
    TransferFields,
)
from .indicators import IndicatorFields
from .paper import CorruptionFields, TransitoryFields, TriggerFields
from .policy import AllocationFields, PolicyBits, TriggerLayerFields
from .registry import (
    ANALYSES,
    PAIRS,
    Analysis,
    Spec,
    TrainedCell,
    order,
    register_analysis,
    run_analyses,
    write_report,
)

__all__ = [
    "ANALYSES",
    "PAIRS",
    "SchemeLoss",
    "Analysis",
    "AllocationFields",
    "AuditFields",
    "CorruptionFields",
    "DefenseFields",
    "DefenseRow",
    "IndicatorFields",
    "PolicyBits",
    "Spec",
    "StarvedLayer",
    "TrainedCell",
    "TransferFields",
    "TransitoryFields",
    "TriggerFields",
    "TriggerLayerFields",
    "order",
    "register_analysis",
    "run_analyses",
    "write_report",
]
