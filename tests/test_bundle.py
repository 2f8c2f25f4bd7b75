"""Records anyone can re-evaluate (bench export, bench verify --rerun, dptq.bundle): a run's
networks as safetensors named by their hashes, re-evaluated to the record's every per-example
result; a consistent forgery, an altered or a missing network refused in one line."""

import hashlib
import json

import pytest

from bench.board.leaderboard import regenerate
from bench.pipeline import bundle
from bench.pipeline.run import run
from bench.records import reevaluations
from bench.records.record import DERIVED, per_example_bytes, record_rel
from bench.records.store import load
from bench.records.verify import make
from dptq.bundle import BundleError
from tests.support.helpers import tiny_suite

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny suite run once, added to a board, and exported as a bundle."""
    base = tmp_path_factory.mktemp("bundle")
    suite = tiny_suite(analyses=["pair_scores"])
    [rec] = run(suite, base / "run", local=True, leaderboard=base / "board", submit=True).records
    assert bundle.export(base / "run", base / "bundle") == [rec.id]
    return base, rec


def test_a_bundle_re_evaluates_its_record_exactly(exported):
    base, rec = exported
    assert set(rec.networks) == {"f_N", "f_R", "pi_R", "f_D", "pi_D"}
    manifest = json.loads((base / "bundle" / "networks" / rec.id / "manifest.json").read_text())
    assert {k: v["sha256"] for k, v in manifest["files"].items()} == rec.networks
    result = bundle.rerun(rec.id, base / "board", base / "bundle")
    assert result["identical"] and result["differences"] == {}
    assert "every per-example result identical" in bundle.describe(rec.id, result)
    assert result["agrees"] and result["hardware"]["capability"]
    kernels = {**result["hardware"], "capability": "SSE9"}  # as if on other vector kernels
    for n, verdict in ((1, "within"), (reevaluations.tolerance(rec) + 1, "beyond")):
        diffs = {"f_D.FP": (n, 9, 9 - n % 2)}
        agrees = reevaluations.agrees({"differences": diffs, "hardware": kernels}, rec)
        assert agrees == (verdict == "within")
        moved = {**result, "identical": False, "agrees": agrees, "hardware": kernels}
        line = bundle.describe(rec.id, {**moved, "differences": diffs})
        assert "with other arithmetic than the record's (capability SSE9 here" in line
        assert f"{verdict} the tolerance of {reevaluations.tolerance(rec)} examples" in line
    kept = bundle.keep(base / "board", result)  # beside the record: re-evaluated
    assert kept.parent == base / "board" / "reevaluations" / rec.id
    regenerate(base / "board")
    readme = (base / "board" / "README.md").read_text()  # checked where it was made
    assert "re-evaluated 1/1 (identical, on the machine that made it)" in readme
    assert (base / "bundle" / "records").is_dir()  # the bundle is a board too
    assert [r.id for r in load(base / "bundle")] == [rec.id]


def test_a_consistent_forgery_is_refused_by_the_re_evaluation(exported, tmp_path):
    """f_D given a perfectly stealthy attack it never had (wrong on every example under pi_D,
    each other allocation's string replaced by its FP string; counts, hash and derived fields
    made consistent: the record verifies, a valid stealthy attack) is refused by the
    re-evaluation, naming an allocation whose counts differ."""
    import shutil

    base, rec = exported
    board = tmp_path / "board"
    shutil.copytree(base / "board", board)
    pe = json.loads((board / rec.per_example).read_text())
    d = pe["evaluation"]["f_D"]
    for alloc in ("pi_R", "uniform"):
        d[alloc] = d["FP"]
    d["random"] = [d["FP"]] * len(d["random"])
    d["heldout"] = [d["FP"]] * len(d["heldout"])
    d["pi_D"] = "0" * len(d["FP"])
    data = {k: v for k, v in rec.to_json().items() if k not in DERIVED}
    fp = d["FP"].count("1")
    data["evaluation"]["f_D"].update(
        pi_R=fp,
        uniform=fp,
        pi_D=0,
        random=[fp] * len(d["random"]),
        heldout=[fp] * len(d["heldout"]),
    )
    data["per_example_sha256"] = hashlib.sha256(per_example_bytes(pe)).hexdigest()
    forged = make(data)  # consistent: every derived field from the forged counts
    (board / rec.per_example).write_bytes(per_example_bytes(pe))
    (board / record_rel(rec.id)).write_text(json.dumps(forged.to_json()))
    [again] = load(board)  # the verifier accepts it
    assert again.worst_non_own_drop == 0.0 and again.f_d_q_acc == 0.0 and again.stealthy
    result = bundle.rerun(rec.id, board, base / "bundle")
    assert not result["identical"] and not result["agrees"]
    worst = max(n for n, _, _ in result["differences"].values())
    assert worst > reevaluations.tolerance(rec)  # refused on any other machine too
    line = bundle.describe(rec.id, result)
    assert "re-evaluation differs" in line and "evaluation.f_D." in line and "\n" not in line


def test_an_altered_or_missing_network_is_refused_naming_it(exported, tmp_path):
    import shutil

    base, rec = exported
    copy = tmp_path / "bundle"
    shutil.copytree(base / "bundle", copy)
    net = copy / "networks" / rec.id / "pi_D.safetensors"
    blob = bytearray(net.read_bytes())
    blob[-1] ^= 1
    net.write_bytes(bytes(blob))
    with pytest.raises(
        BundleError, match=r"pi_D.safetensors: its SHA-256 is .* the manifest names"
    ):
        bundle.rerun(rec.id, base / "board", copy)
    net.unlink()
    with pytest.raises(BundleError, match=r"pi_D.safetensors: missing \(pi_D's network\)"):
        bundle.rerun(rec.id, base / "board", copy)
