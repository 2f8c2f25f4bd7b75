"""Setting a run up: its data and plan (everything that can be wrong fails here, in one line),
its folder (claimed for one suite), and where its stages run (the executor)."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from dptq.io import write_atomic

from ..config.suite import Suite, SuiteError, parse_suite, suite_text
from ..executors.events import LOG, log_event
from ..names import Layout
from . import plan


def prepare(suite: Suite, run_dir: Path, dry_run: bool):
    """Load the data and plan the cells; everything that can be wrong fails here, in one line."""
    from dptq.data import UnreadableImages

    downloads = bool(getattr(suite.dataset.options, "download", False))
    # a dry run never downloads; otherwise a missing dataset fails here, before any stage
    try:
        data = None if (dry_run and downloads) else suite.dataset.load(suite.protocol)
    except UnreadableImages as e:
        raise SuiteError(
            f"dataset: {e}, or set 'bad_images: skip' under the suite's dataset to leave them out"
        ) from None
    num_classes = data.num_classes if data is not None else 10  # L does not depend on it
    cells = plan.cells(suite, num_classes)
    LOG.info(plan.describe(suite, cells, run_dir))
    if data is not None and data.skipped:
        shown = ", ".join(data.skipped[:10]) + (" ..." if len(data.skipped) > 10 else "")
        LOG.info(
            f"warning: {len(data.skipped)} unreadable image(s) left out (bad_images: skip): {shown}"
        )
    return data, cells


def claim(suite: Suite, layout: Layout, fresh: bool) -> None:
    """Create the run folder for ``suite``; refuse one that holds another suite's run."""
    if fresh and layout.root.exists():
        shutil.rmtree(layout.root)
    layout.root.mkdir(parents=True, exist_ok=True)
    if layout.suite_file.exists() and not same_suite(layout.suite_file, suite):
        raise SuiteError(
            f"{layout.root}: holds a run of a different suite; use --fresh or another --out"
        )
    write_atomic(layout.suite_file, suite_text(suite))
    log_event(layout.root, event="start", suite=suite.name, suite_hash=suite.digest())


def same_suite(file: Path, suite: Suite) -> bool:
    """Whether the run folder's ``suite.yaml`` is ``suite``: equal hashes, so a run started
    before an upgrade that added a field (at its default) resumes after it."""
    try:
        return parse_suite(yaml.safe_load(file.read_text()), str(file)).digest() == suite.digest()
    except (SuiteError, yaml.YAMLError):
        return False


def executor(suite, root: Path, local: bool, address: str | None, workers: int):
    if local:
        from ..executors.local import LocalExecutor

        return LocalExecutor(suite, root, workers)
    from ..executors.ray.executor import RayExecutor

    return RayExecutor(suite, root, address)
