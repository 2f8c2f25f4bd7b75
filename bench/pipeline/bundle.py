"""A run's submission bundle (``bench export RUN --to DIR``) and a record re-evaluated from one
(``bench verify RECORD --rerun --checkpoints DIR``).

**Export**: the run's records and per-example files, laid out as a board (``records/``,
``per_example/``), and per record the networks it evaluated (f_N, f_R, pi_R, f_D, pi_D) as
safetensors under ``networks/<id>/`` with a manifest (:mod:`dptq.bundle`) whose hashes are the
ones the record names. Checkpoints are tens of MB per network: a bundle is published beside the
repository (a folder, or the Hugging Face Hub), never committed to it.

**Re-evaluation**: the record's networks loaded from a bundle (each file's hash checked against
the manifest and the record), its suite rebuilt from its ``suite_text``, its test split loaded,
and its evaluation run again with its own sampler seeds (:func:`dptq.evaluate.evaluate_cell`):
every per-example string is compared with the record's per-example file. On the machine that
made the record they are the same, bit for bit; with other float arithmetic (another CPU, other
vector kernels) a few examples on a decision boundary may move, within a measured tolerance
(:func:`bench.records.reevaluations.agrees`). A record whose strings or counts were edited (a
consistent forgery) is refused in one line naming the allocation whose counts differ.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from dptq import bundle
from dptq.bundle import BundleError

from ..config.suite import parse_suite
from ..names import Layout, cell_key, kd_name
from ..records import reevaluations, store
from ..records.machine import hardware
from ..records.record import RecordError
from . import plan, stages

NETWORKS = "networks"  # a bundle's folder of networks, one subfolder per record id


def _cell(suite, rec) -> plan.Cell:
    cells = plan.cells(suite, rec.num_classes)
    key = cell_key(rec.architecture, rec.bit_options, rec.budget, rec.seed)
    [cell] = [c for c in cells if c.key == key]
    return cell


def export(run_dir: Path, to: Path) -> list[str]:
    """Write ``run_dir``'s submission bundle into ``to`` (module docstring); returns the ids."""
    run_dir, to = Path(run_dir), Path(to)
    suite = parse_suite(yaml.safe_load((run_dir / "suite.yaml").read_text()), "suite.yaml")
    records = [r for r in store.load(run_dir) if r.error is None]
    store.add(records, to, source=run_dir)
    layout = Layout(run_dir)
    for rec in records:
        cell = _cell(suite, rec)
        f_n = stages.load_f_n(
            suite,
            cell.student,
            layout.artifact(kd_name(cell.student, cell.stage_seed)),
            rec.num_classes,
        )
        nets = {"f_N": f_n}
        bars = {}
        for mode, tag in (("robust", "R"), ("detrimental", "D")):
            f, pi = stages.load_pair(
                suite, cell, mode, layout.artifact(cell.search(mode)), rec.num_classes
            )
            nets[f"f_{tag}"], nets[f"pi_{tag}"] = f, pi
            bars[f"pi_{tag}"] = {
                "barred_layers": list(getattr(pi, "floor_barred", ())),
                "barred_options": list(getattr(pi, "barred_options", ())),
            }
        manifest = bundle.save(to / NETWORKS / rec.id, nets, {"record": rec.id, "policies": bars})
        named = rec.networks or {}
        for name, entry in manifest["files"].items():
            if named.get(name, entry["sha256"]) != entry["sha256"]:
                raise BundleError(
                    f"{run_dir}: {rec.id}'s {name} is not the network its record names (the run "
                    "folder's checkpoints changed since)"
                )
    return [r.id for r in records]


def rerun(rid: str, board: Path, checkpoints: Path, device: str = "cpu") -> dict:
    """Re-evaluate record ``rid`` of ``board`` from the bundle ``checkpoints`` (module
    docstring): ``{"identical": bool, "agrees": bool, "differences": {allocation: [differing,
    right in the record, right recomputed]}, "seconds": ..., "hardware": this machine's
    fingerprint, "record": the record}``;
    RecordError or BundleError (one line) for a bundle that is not the record's, or a record its
    networks do not give."""
    import time

    import torch

    from dptq.evaluate import evaluate_cell
    from dptq.policy import bar_floor, create_policy

    from .reproduce import find

    began = time.perf_counter()
    rec = find(Path(board), rid)
    if rec.error is not None or rec.suite_text is None:
        raise RecordError(
            f"{rid}: a failed record, or one without its suite, cannot be re-evaluated"
        )
    folder = Path(checkpoints) / NETWORKS / rid
    manifest = bundle.read_manifest(folder)
    suite = parse_suite(yaml.safe_load(rec.suite_text), f"{rid}: suite_text")
    data = suite.dataset.load(suite.protocol)
    cell = _cell(suite, rec)
    named = rec.networks or {}
    nets, policies = {}, {}
    for tag in ("f_N", "f_R", "f_D"):
        net = stages.quantizable(suite, cell.student, data.num_classes)
        state = bundle.load_state(folder, tag, manifest, named.get(tag))
        nets[tag] = bundle.load_into(net, state, str(folder / f"{tag}.safetensors")).eval()
    for tag in ("R", "D"):
        name = f"pi_{tag}"
        pi = create_policy(
            suite.policy, nets["f_N"].num_layers, len(cell.options), suite.policy_options
        )
        state = bundle.load_state(folder, name, manifest, named.get(name))
        pi = bundle.load_into(pi, state, str(folder / f"{name}.safetensors"))
        bar = manifest.get("policies", {}).get(name, {})
        pi = bar_floor(pi, bar.get("barred_layers", []), bar.get("barred_options") or 0)
        policies[f"f_{tag}"] = pi.eval()
    torch.set_num_threads(suite.resources.threads)
    with torch.no_grad():
        ev = evaluate_cell(
            nets,
            policies,
            data,
            cell.options,
            cell.budget,
            device,
            seed=cell.seed,
            random_allocations=suite.protocol.random_allocations,
        )
    mine = ev.per_example()
    theirs = json.loads((Path(board) / rec.per_example).read_text())["evaluation"]
    differences = {}
    for net, by in mine.items():
        for alloc, bits in by.items():
            pairs = (
                zip(bits, theirs[net][alloc])
                if isinstance(bits, list)
                else [(bits, theirs[net][alloc])]
            )
            for i, (a, b) in enumerate(pairs):
                n = sum(x != y for x, y in zip(a, b))
                if n:
                    name = f"{net}.{alloc}" + (f"[{i}]" if isinstance(bits, list) else "")
                    differences[name] = (n, b.count("1"), a.count("1"))
    here = hardware()  # after set_num_threads: the threads the evaluation ran with
    return {
        "identical": not differences,
        "agrees": reevaluations.agrees({"differences": differences, "hardware": here}, rec),
        "differences": differences,
        "seconds": time.perf_counter() - began,
        "hardware": here,
        "record": rec,
    }


def keep(board: Path, result: dict) -> Path | None:
    """Keep a re-evaluation's result (:func:`rerun`'s, naming its record) on ``board``
    (:mod:`bench.records.reevaluations`: this machine, commit and date); None for a record that
    names no networks (written before records carried their hashes: nothing to tie it to)."""
    import datetime as dt

    from ..records.machine import git_state

    rec = result["record"]
    if not rec.networks:
        return None
    commit, _ = git_state(Path(__file__).parent)
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    entry = reevaluations.make(rec, result, result["hardware"], commit, date)
    return reevaluations.write(Path(board), entry)


def describe(rid: str, result: dict) -> str:
    """One line: re-evaluated identical; or agreeing within the tolerance for other arithmetic
    than the record's; or differing, naming the allocation whose counts differ most."""
    if result["identical"]:
        return (
            f"{rid}: re-evaluated from its networks in {result['seconds']:.0f} s: every "
            "per-example result identical"
        )
    diffs, here, rec = result["differences"], result["hardware"], result["record"]
    name, (n, stored, mine) = max(diffs.items(), key=lambda kv: kv[1][0])
    most = f"evaluation.{name}: {stored} right in the record, {mine} recomputed ({n} differ)"
    if reevaluations.same_arithmetic(here, rec.hardware):
        return f"{rid}: re-evaluation differs in {len(diffs)} allocation(s): {most}"
    other = "; ".join(
        f"{k} {a} here, {b} in the record"
        for k, a, b in zip(
            ("machine", *reevaluations.ARITHMETIC),
            reevaluations.arithmetic(here),
            reevaluations.arithmetic(rec.hardware),
        )
        if a != b
    )
    verdict = "within" if result["agrees"] else "beyond"
    return (
        f"{rid}: re-evaluated in {result['seconds']:.0f} s with other arithmetic than the "
        f"record's ({other}): {len(diffs)} allocation(s) differ, "
        f"{verdict} the tolerance of {reevaluations.tolerance(rec)} examples; most: {most}"
    )
