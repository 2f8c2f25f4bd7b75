"""Import rules (CONVENTIONS 1, 16): data flows one way and each layer imports only what it needs.

- ``dptq`` (the method) imports neither ``bench`` nor Ray: usable from a notebook with torch/timm.
- The leaderboard views (and the record store) import neither torch nor ``dptq``'s trainers.
- ``bench`` has no import cycle, counting imports inside functions too.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _modules(package: str) -> list[str]:
    return sorted(
        f"{package}.{p.stem}" for p in (ROOT / package).glob("*.py") if p.stem != "__main__"
    )


def _imported_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sorted(sys.modules)))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return set(out.stdout.split())


def test_dptq_imports_neither_bench_nor_ray():
    loaded = _imported_after("; ".join(f"import {m}" for m in _modules("dptq")))
    assert not {m for m in loaded if m.split(".")[0] in ("bench", "ray")}
    for path in (ROOT / "dptq").glob("*.py"):  # lazy imports inside functions too
        for name in _imports(path):
            assert name.split(".")[0] not in ("bench", "ray"), (path.name, name)


@pytest.mark.parametrize("module", ["bench.leaderboard", "bench.store"])
def test_views_import_neither_torch_nor_trainers(module):
    loaded = _imported_after(f"import {module}")
    assert "torch" not in loaded
    assert not loaded & {"dptq.train", "dptq.engine", "dptq.pair", "dptq.models", "bench.runner"}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside functions (relative ones resolved)."""
    package = path.parent.name
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x / from .x import y
                base = package if not node.module else f"{package}.{node.module}"
                names.add(base)
                if not node.module:
                    names |= {f"{package}.{a.name}" for a in node.names}
            else:
                names.add(node.module)
                names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_bench_has_no_import_cycle():
    mods = _modules("bench") + ["bench.__main__"]
    graph = {
        m: {n for n in _imports(ROOT / "bench" / f"{m.split('.')[1]}.py") if n in mods and n != m}
        for m in mods
    }
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                pytest.fail(f"import cycle: {' -> '.join([*stack, m, n])}")
            if n not in state:
                visit(n, [*stack, m])
        state[m] = 2

    for m in mods:
        if m not in state:
            visit(m, [])
    assert graph["bench.runner"] and graph["bench.leaderboard"]  # the graph is not empty


def test_no_module_over_400_lines():
    for package in ("bench", "dptq"):
        for path in (ROOT / package).glob("*.py"):
            lines = len(path.read_text().splitlines())
            assert lines <= 400, f"{path.relative_to(ROOT)} has {lines} lines"
