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


def hardware(threads: int | None = None) -> dict:
    """What a record keeps of the machine: architecture, CPU model, the vector instructions
    torch uses (AVX2, AVX512, ...: float results differ between them), cores, the torch threads
    the work ran with (``threads``; default: this process's) and the GPU."""
    import torch

    from .verify import SAFE

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": platform.machine(),
        "cpu_model": re.sub(f"[^{SAFE}]", " ", cpu_model())[:200],  # a record's safe set
        "capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads() if threads is None else threads,
        "gpu": gpu,
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
