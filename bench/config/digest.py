"""A suite's hash from its plain data alone (standard library only: no torch).

A record's id holds its suite's hash (``suite_hash``: :func:`digest` of the resolved suite, the
``suite_text`` it carries). The hash must stay the same for a suite whose meaning has not
changed, so two rules keep it steady as the code grows, and both are here, in the open:

- **a field added after records were first written** is listed in :data:`LATER_FIELDS` with its
  default, and left out of the hash while at it (a suite that does not use it keeps its hash and
  its rows). A new field must be added there: forgetting it changes every committed record's
  hash, which ``tests/test_store.py`` (every committed record's suite text hashes to its id)
  reports naming this table;
- **a field removed since** is put back at the value it always had (:func:`_removed_fields`).

Reading a record needs only this (the board's views never load the trainers); building a
:class:`bench.config.suite.Suite` gives the same hash (``tests/test_suite.py``).
"""

from __future__ import annotations

import copy
import hashlib
import json

LATER_FIELDS = (  # (path, default); "*": every item of a list
    (("sweep_layers",), None),
    (("max_concurrent",), None),
    (("corruption_degrees",), None),
    (("resources", "precision"), "no"),
    (("resources", "loader_workers"), 0),
    (("resources", "cache_f_n"), True),
    (("resources", "compile_taps"), False),
    (("protocol", "attack_min"), 10.0),
    (("teacher", "options"), {}),
    (("students", "*", "options"), {}),
    (("students", "*", "pretrained"), False),
    (("policy_options", "norm"), "batch"),
    (("pair", "stealth_kd"), True),
    (("pair", "stealth_start"), None),
    (("pair", "stealth_shares"), []),
    (("pair", "attack_share"), 1.0),
    (("pair", "floor_barred"), []),
    (("pair", "barred_options"), 1),
    (("search", "select_epoch"), "last"),
    (("division",), "open"),
    (("attack",), None),
    (("protocol", "version"), 2),
    (("protocol", "select_margin"), 0.0),
    (("search", "objective"), "penalty"),
    (("search", "grid"), {}),
)
# resources' data-parallel fields, added later: their default is one process
WORKER_FIELDS = ("workers", "cpus_per_worker", "gpus_per_worker")
# dptq.train.TEACHER_DEFAULTS.augment as plain data (tests/test_suite.py keeps them equal)
TEACHER_AUGMENT = {
    "random_resized_crop": True,
    "randaugment": False,
    "randaugment_n": 2,
    "randaugment_m": 14,
    "color_jitter": False,
    "hflip": True,
    "crop_padding": False,
}


def _holders(plain, parents):
    """The dicts at ``parents`` in ``plain`` (``*``: every item of a list); none where a parent
    is missing or not a mapping (an older suite, or a hostile one)."""
    nodes = [plain]
    for p in parents:
        nxt = []
        for n in nodes:
            if p == "*" and isinstance(n, list):
                nxt += n
            elif isinstance(n, dict) and p in n:
                nxt.append(n[p])
        nodes = nxt
    return [n for n in nodes if isinstance(n, dict)]


def digest_plain(plain: dict) -> dict:
    """A resolved suite's plain data without the later fields left at their default: what
    :func:`digest` and the stages' settings (:func:`bench.pipeline.plan.stage_settings`) hash."""
    out = copy.deepcopy(plain)
    for path, default in LATER_FIELDS:
        *parents, key = path
        for holder in _holders(out, parents):
            if key in holder and holder[key] == default:
                holder.pop(key)
    resources = out.get("resources")
    if isinstance(resources, dict) and resources.get("workers") == 1:
        for key in WORKER_FIELDS:
            resources.pop(key, None)
    return out


def _removed_fields(plain: dict) -> None:
    """Fields removed since records were first written, put back at the value they always had,
    so a suite keeps its hash and its rows: ``modes`` (every cell trains both pairs) and
    ``augment.mixup`` of the teacher and KD stages (never read; batch mixup is the stage's own
    ``mixup``): true, except a teacher stage left at the teacher's default augmentation."""
    plain["modes"] = ["robust", "detrimental"]
    for stage in ("teacher_stage", "kd_stage"):
        aug = (plain.get(stage) or {}).get("augment")
        if isinstance(aug, dict):
            aug["mixup"] = not (stage == "teacher_stage" and aug == TEACHER_AUGMENT)


def digest(plain: dict) -> str:
    """The short hash of a resolved suite (its plain data, as ``suite_text`` holds it)."""
    out = digest_plain(plain)
    _removed_fields(out)
    blob = json.dumps(out, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def with_later_defaults(plain: dict) -> dict:
    """A resolved suite's plain data with every later field it lacks at its default (an older
    record's suite text, read as today's code would resolve it)."""
    out = copy.deepcopy(plain)
    for path, default in LATER_FIELDS:
        *parents, key = path
        for holder in _holders(out, parents):
            holder.setdefault(key, copy.deepcopy(default))
    return out
