"""What executors share (bench.executors.base): one Accelerator per process, and the local executor's
searches and tasks (a failing call is a result, not a crash)."""

from bench.config.sections import Resources
from bench.executors.base import process_accelerator
from bench.executors.local import LocalExecutor
from tests.support.helpers import make_suite


def test_one_accelerator_per_process_replaced_only_for_other_settings():
    a = process_accelerator(Resources())
    assert process_accelerator(Resources(cpus=2)) is a  # the same settings: the same one
    b = process_accelerator(Resources(precision="bf16"))
    assert b is not a and b.mixed_precision == "bf16"  # another run's settings: replaced
    c = process_accelerator(Resources())
    assert c.mixed_precision == "no" and process_accelerator(Resources()) is c


def test_local_tasks_give_each_result_or_its_reason(tmp_path):
    ex = LocalExecutor(make_suite(), tmp_path)

    def boom():
        raise ValueError("bad cell")

    out = {k: (r, e) for k, r, e in ex.tasks({"a": lambda: 1, "b": boom})}
    assert out == {"a": (1, None), "b": (None, "ValueError: bad cell")}


def test_a_trial_whose_node_died_says_so_not_its_ip():
    """Ray Tune's error file for a trial on a host that lost its link (tests/test_two_hosts.py):
    Ray's account, with the actor's fields before it, not a traceback."""
    from bench.executors.events import failure_reason

    text = (
        "Failure # 1 (occurred at 2026-12-04_02-26-06)\n"
        "The actor died unexpectedly before finishing this task.\n"
        "\tclass_name: wrap_function.<locals>.ImplicitFunc\n\tactor_id: 1b5f\n\tpid: 28230\n"
        "\tnamespace: 12e6\n\tip: 10.231.0.2\n"
        "The actor died because its node has died. Node Id: e1cd\n"
        "\tthe actor's node was terminated unexpectedly: health check failed\n"
    )
    assert failure_reason(text) == (
        "worker or node died: The actor died because its node has died. Node Id: e1cd"
    )
