"""The machine a run or a benchmark ran on, in words a reader can compare (records, perf)."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the platform's word for it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


VECTOR_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni")
VECTOR_FLAGS += ("avx512_bf16", "amx_tile", "amx_bf16", "asimd", "sve")  # x86 and arm's


def cpu_flags() -> str:
    """The vector instructions this CPU has, of those that change which kernels torch picks
    (:data:`VECTOR_FLAGS`, comma-separated; ``/proc/cpuinfo``)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    line = next((x for x in text.splitlines() if x.startswith(("flags", "Features"))), "")
    have = set(line.split(":", 1)[-1].split())
    return ",".join(f for f in VECTOR_FLAGS if f in have)


def blas() -> str:
    """The BLAS torch was built with (``BLAS_INFO`` of ``torch.__config__.show()``)."""
    import torch

    found = re.search(r"BLAS_INFO=([A-Za-z0-9_.-]+)", torch.__config__.show())
    return found.group(1) if found else "unknown"


def machine_id() -> str:
    """A random id this machine keeps (``$XDG_CACHE_HOME/dptq-bench/machine-id``, made the first
    time; ``DPTQ_MACHINE_ID`` overrides it): two records with the same CPU model name (cloud
    CPUs often say only "AMD EPYC") are told apart by it. Not derived from the hardware: it says
    nothing about the machine but that it is the same one."""
    if os.environ.get("DPTQ_MACHINE_ID"):
        return re.sub(r"[^0-9a-f]", "", os.environ["DPTQ_MACHINE_ID"].lower())[:32] or "0"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dptq-bench"
    path = base / "machine-id"
    try:
        known = path.read_text().strip()
        if re.fullmatch(r"[0-9a-f]{32}", known):
            return known
    except OSError:
        pass
    import uuid

    new = uuid.uuid4().hex
    try:
        base.mkdir(parents=True, exist_ok=True)
        path.write_text(new + "\n")
    except OSError:  # a read-only home: the id of this process only
        pass
    return new


def hardware(threads: int | None = None) -> dict:
    """What a record keeps of the machine (its fingerprint): architecture, CPU model, its vector
    instructions (:func:`cpu_flags`) and the ones torch uses (AVX2, AVX512, ...: float results
    differ between them), cores, the torch threads the work ran with (``threads``; default:
    this process's), torch's build and BLAS, the GPU, and the machine's own id
    (:func:`machine_id`)."""
    import torch

    from .verify import SAFE

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": platform.machine(),
        "cpu_model": re.sub(f"[^{SAFE}]", " ", cpu_model())[:200],  # a record's safe set
        "cpu_flags": cpu_flags(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads() if threads is None else threads,
        "torch": re.sub(f"[^{SAFE}]", " ", torch.__version__)[:40],
        "blas": blas(),
        "gpu": gpu,
        "machine_id": machine_id(),
    }


def git_state(where: Path) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout holding ``where``; (None, None) outside one. Dirty: a
    tracked file differs from the commit (untracked files do not count)."""

    def git(*args) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], capture_output=True, text=True, cwd=where, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout if out.returncode == 0 else None

    commit = (git("rev-parse", "HEAD") or "").strip() or None
    if commit is None:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status.strip())
