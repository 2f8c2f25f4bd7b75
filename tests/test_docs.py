"""README.md is a newcomer's path: short, every link it gives resolves, every command it quotes
is one the command line takes (and the docs pages' links resolve too)."""

import re
import shlex
from pathlib import Path

import pytest

from bench.__main__ import _parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_resolves(page):
    """Every relative link (a file or an image) of README and the docs pages names a file of the
    repository; web links are left to the reader."""
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+://", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.name}: {target} does not exist"


def _commands(text: str) -> list[str]:
    """Every ``python -m bench ...`` README quotes, in code blocks and inline code."""
    spans = re.findall(r"```(?:bash)?\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text)
    out = []
    for span in spans:
        for part in re.split(r"&&|\n", span):
            part = part.strip()
            if part.startswith("python -m bench"):
                out.append(part)
    return out


def test_every_command_readme_quotes_is_one_the_command_line_takes():
    """Each quoted ``python -m bench`` command parses with the real argument parser, and each
    suite file it names under ``suites/`` exists."""
    commands = _commands((ROOT / "README.md").read_text())
    assert len(commands) >= 8, commands
    for cmd in commands:
        argv = shlex.split(cmd)[3:]
        try:
            _parser().parse_args(argv)
        except SystemExit as e:
            if e.code != 0 or argv != ["--help"]:  # --help exits 0 after printing
                raise AssertionError(
                    f"README quotes {cmd!r}, which the command line refuses"
                ) from None
        for arg in argv:
            if arg.startswith("suites/"):
                assert (ROOT / arg).is_file(), f"README quotes {cmd!r}: {arg} does not exist"


def test_the_test_commands_readme_gives_exist():
    """README's two test commands: the whole suite, and the fast layer (a registered marker)."""
    text = (ROOT / "README.md").read_text()
    assert ". .venv/bin/activate && python -m pytest -q" in text
    assert "python -m pytest -m fast" in text
    assert "fast:" in (ROOT / "pyproject.toml").read_text()


@pytest.mark.parametrize(
    "page", [p for p in PAGES if p.name != "research-log.md"], ids=lambda p: p.name
)
def test_every_source_file_a_page_names_exists(page):
    """A page that names a source file (`bench/...py`, `dptq/...py`, `tests/...py`, `scripts/`)
    names one that exists: a move updates the pages too (the research log is history and keeps
    the paths of its day)."""
    for path in re.findall(
        r"`((?:bench|dptq|tests|scripts|suites)/[\w/.-]+\.(?:py|sh|yaml))", page.read_text()
    ):
        assert (ROOT / path).exists(), f"{page.name}: {path} does not exist"
