"""Import rules (CONVENTIONS 1, 3, 16): data flows one way and each layer imports only what it needs.

- ``dptq`` (the method) imports neither ``bench`` nor Ray: usable from a notebook with torch/timm.
- Ray is imported by ``bench.executors.ray`` only (the edge).
- The leaderboard views, the record type and the store import neither torch nor ``dptq``'s
  trainers; the analyses' declarations (``dptq.analyses``) load neither torch nor pandas.
- Neither package has an import cycle, counting imports inside functions too.
- A module over 300 lines says in its docstring why it is one job; none is over 400.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "dptq")


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _modules(package: str) -> list[str]:
    return [_name(p) for p in _files(package) if p.stem != "__main__"]


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


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside functions (relative ones resolved)."""
    here = _name(path).split(".")
    package = here if path.stem == "__init__" else here[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x / from ..x import y
                base = ".".join(package[: len(package) - node.level + 1])
                if node.module:
                    base = f"{base}.{node.module}"
                    names.add(base)
                names |= {f"{base}.{a.name}" for a in node.names}
            else:
                names.add(node.module)
                names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_dptq_imports_neither_bench_nor_ray():
    loaded = _imported_after("; ".join(f"import {m}" for m in _modules("dptq")))
    assert not {m for m in loaded if m.split(".")[0] in ("bench", "ray")}
    for path in _files("dptq"):  # lazy imports inside functions too
        for name in _imports(path):
            assert name.split(".")[0] not in ("bench", "ray"), (path.name, name)


def test_ray_is_imported_by_bench_cluster_only():
    for path in _files("bench"):
        if _name(path).startswith("bench.executors.ray"):
            continue
        ray = [n for n in _imports(path) if n.split(".")[0] == "ray"]
        assert not ray, (str(path.relative_to(ROOT)), ray)


@pytest.mark.parametrize(
    "module",
    [
        "bench.board.leaderboard",
        "bench.records.store",
        "bench.records.record",
        "bench.records.verify",
    ],
)
def test_views_import_neither_torch_nor_trainers(module):
    loaded = _imported_after(f"import {module}")
    assert "torch" not in loaded
    assert not loaded & {
        "dptq.train",
        "dptq.engine",
        "dptq.pair",
        "dptq.models",
        "bench.pipeline.run",
    }


def test_analysis_declarations_load_neither_torch_nor_pandas():
    loaded = _imported_after("import dptq.analyses; print(list(dptq.analyses.ANALYSES))")
    assert not loaded & {"torch", "pandas", "matplotlib"}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """An import cycle of ``graph`` (module -> the modules it imports), or None."""
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return [*stack, m, n]
            if n not in state and (found := visit(n, [*stack, m])):
                return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m, [])):
            return found
    return None


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package):
    files = {
        _name(p) if p.stem != "__main__" else f"{package}.__main__": p for p in _files(package)
    }
    graph = {m: {n for n in _imports(f) if n in files and n != m} for m, f in files.items()}
    assert sum(map(len, graph.values())) > 20  # the graph is not empty
    cycle = _cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_the_cycle_rule_would_catch_one(tmp_path):
    """Two modules that import each other (one inside a function) are a cycle for the rule."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    imports = {}
    for m in ("a", "b"):
        tree = ast.parse((pkg / f"{m}.py").read_text())
        found = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imports[m] = {n.module or n.names[0].name for n in found}
    assert _cycle(imports) == ["a", "b", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


# bench's packages by layer: what each may import (its own modules, and these)
LAYERS = {
    "config": set(),
    "records": {"config", "names"},
    "board": {"records", "config", "names"},
    "executors": {"config"},
    "pipeline": {"executors", "records", "board", "config", "names"},
    "perf": {"records"},
    "tools": {"config", "names"},
    "names": set(),
}


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "bench" else None


def test_bench_is_a_folder_per_layer_and_each_imports_only_the_layers_below():
    """``ls bench`` shows the layers (config, records, board, executors, pipeline, perf, tools,
    and the names every layer uses); no module sits beside them but the package's entry points,
    and each layer imports only the ones its row of :data:`LAYERS` names (inside functions
    too)."""
    loose = sorted(p.name for p in (ROOT / "bench").glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "names.py"], loose
    assert {
        p.name for p in (ROOT / "bench").iterdir() if p.is_dir() and p.name != "__pycache__"
    } == (set(LAYERS) - {"names"})
    for path in _files("bench"):
        here = _package_of(_name(path))
        if here in (None, "__main__"):
            continue
        for name in _imports(path):
            there = _package_of(name)
            if there is None or there == here or there == "__main__":
                continue
            assert there in LAYERS[here], (str(path.relative_to(ROOT)), name)


@pytest.mark.parametrize("package", PACKAGES)
def test_module_sizes(package):
    for path in _files(package):
        text = path.read_text()
        lines = len(text.splitlines())
        assert lines <= 400, f"{path.relative_to(ROOT)} has {lines} lines"
        if lines > 300:
            doc = ast.get_docstring(ast.parse(text)) or ""
            assert "one job" in doc.lower(), (
                f"{path.relative_to(ROOT)} has {lines} lines: its docstring says why it is one job"
            )


@pytest.mark.parametrize(
    "path", sorted((ROOT / "docs" / "research").glob("*.py")), ids=lambda p: p.name
)
def test_research_scripts_import(path):
    """The research scripts (docs/research/) import: they use bench's internals, so a move of
    those breaks here, not in a reader's hands (ruff checks them too, in .ci/run)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"research_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # each runs its work under `if __name__ == "__main__"`
    assert hasattr(module, "main") or module.__doc__
