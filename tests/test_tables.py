"""Markdown tables (dptq.tables): the lines of a table, the escape of a cell, and no module of
bench or dptq building a table's rule line by hand."""

import ast
import re
from pathlib import Path

import pytest

from dptq.tables import cell, markdown_table

ROOT = Path(__file__).resolve().parent.parent
# a rule line (|---|---:|) or a piece of one ("|" + "---|" * n)
RULE = re.compile(r"^\|?(-{3}:?\|)+$")


def test_a_table_is_its_header_rule_and_rows():
    rows = [["resnet18", 20, f"{84.4444:.1f}"], [cell("a|b <c>\n d"), 8, "-"]]
    assert markdown_table(["architecture", "L", "gap"], rows, "lrr") == [
        "| architecture | L | gap |",
        "|---|---:|---:|",
        "| resnet18 | 20 | 84.4 |",
        "| a\\|b &lt;c&gt; d | 8 | - |",
    ]
    assert markdown_table(["a", "b"], []) == ["| a | b |", "|---|---|"]


def test_a_cell_is_one_line_without_column_break_or_html():
    assert cell("  x \\ y |\tz\n<b>  ") == "x \\\\ y \\| z &lt;b&gt;"
    assert cell(1.5) == "1.5"


@pytest.mark.parametrize(
    "header, rows, align",
    [
        (["a", "b"], [["1"]], None),  # a row short of a cell
        (["a", "b"], [["1", "2", "3"]], "lr"),  # a row with one too many
        (["a", "b"], [["1", "2"]], "l"),  # align short of a column
        (["a", "b"], [["1", "2"]], "lc"),  # neither l nor r
    ],
)
def test_a_table_whose_shapes_disagree_is_refused(header, rows, align):
    with pytest.raises(ValueError):
        markdown_table(header, rows, align)


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring nodes of a module, its classes and functions."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def hand_built_rules(source: str) -> list[str]:
    """The string constants of ``source`` (docstrings aside) that are a table's rule line."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in skip
        and (RULE.match(node.value) or node.value.startswith("|---"))
    ]


def test_no_module_builds_a_rule_line_by_hand():
    """Every Markdown table is :func:`dptq.tables.markdown_table`'s."""
    found = {}
    for package in ("bench", "dptq"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "dptq" / "tables.py":
                continue
            if rules := hand_built_rules(path.read_text()):
                found[str(path.relative_to(ROOT))] = rules
    assert not found, f"rule lines built by hand (use dptq.tables.markdown_table): {found}"


def test_the_rule_scan_would_catch_one():
    source = (
        '"""| a |\n|---|"""\n\n'
        'def f(n):\n    """|---|"""\n    return ["|---|---:|", "|" + "---|" * n]\n'
    )
    assert hand_built_rules(source) == ["|---|---:|", "---|"]
    assert hand_built_rules('x = "| a | b |"\ny = f"|{a}|"\n') == []
