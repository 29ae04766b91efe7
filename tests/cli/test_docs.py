"""The documentation stays true: every command and option is documented, links lead
somewhere, the examples are what the commands print, and the public API is pinned."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import backfill
from backfill.cli import cli
from backfill.models import RESULT_COLUMNS, Status
from tests.conftest import ROOT

README_PATH = ROOT / "README.md"
PAGE_PATHS = sorted((ROOT / "docs").glob("*.md"))
#: Every Markdown file whose links are checked.
LINKED_PATHS = [README_PATH, *PAGE_PATHS, ROOT / "benchmarks" / "README.md"]


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


README = read(README_PATH)
PAGES = {path.name: read(path) for path in PAGE_PATHS}
#: click's own options, the same for every command.
EXEMPT = frozenset({"-h", "--help", "--version"})
MAX_README_LINES = 250
MAX_TABLE_ROW = 180


def documented(text: str, opt: str) -> bool:
    """`opt` written as code, exactly: `--rate` is not `--rate-limit` nor `--rate_x`."""
    return re.search("`" + re.escape(opt) + r"(?![\w-])", text) is not None


def without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def sections(page: str) -> dict[str, str]:
    """The text under each `## ` heading, up to the next one, by heading."""
    found = re.finditer(r"^## ([^\n]+)\n(.*?)(?=^## |\Z)", without_code_blocks(page), re.M | re.S)
    return {match[1].strip(): match[2] for match in found}


COMMAND_SECTIONS = {
    heading.removeprefix("backfill "): text
    for heading, text in sections(PAGES["commands.md"]).items()
    if heading.startswith("backfill ")
}


def options_of(command: click.Command) -> list[str]:
    names = []
    for param in command.params:
        if isinstance(param, click.Option):
            names += [opt for opt in param.opts + param.secondary_opts if opt not in EXEMPT]
    return names


def test_options_are_matched_exactly():
    assert documented("| `--rate R` | `450/min` |", "--rate")
    assert documented("`--mapping`, `-m`", "-m")
    assert not documented("| `--rate-limit N` | `450` |", "--rate")
    assert not documented("`--max-retries N`", "--max")
    assert not documented("--rate R, not as code", "--rate")


def test_the_readme_names_every_command_and_links_every_page():
    for name in cli.commands:
        assert re.search(rf"`backfill {re.escape(name)}(?![\w-])", README), name
    for path in PAGE_PATHS:
        assert f"](docs/{path.name})" in README, path.name
    assert "](benchmarks/README.md)" in README


def test_commands_md_has_a_section_per_command():
    assert sorted(COMMAND_SECTIONS) == sorted(cli.commands)


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_option_is_documented_in_its_command_section(name):
    section = COMMAND_SECTIONS[name]
    missing = [opt for opt in options_of(cli.commands[name]) if not documented(section, opt)]
    assert not missing, f"docs/commands.md, '## backfill {name}' lacks {missing}"


def test_the_global_options_are_documented():
    section = sections(PAGES["commands.md"])["Global options"]
    assert options_of(cli)
    assert all(documented(section, opt) for opt in options_of(cli))


def test_every_status_and_result_column_is_documented():
    operations = PAGES["operations.md"]
    for status in Status:
        assert f"`{status}`" in README, status
        assert f"`{status}`" in operations, status
    assert ", ".join(RESULT_COLUMNS) in re.sub(r"\s+", " ", operations)


def test_the_two_setup_commands_are_the_ones_ci_runs():
    assert "bash scripts/demo.sh" in README
    assert "bash scripts/test.sh" in README
    assert "bash scripts/test.sh" in read(ROOT / ".ci" / "run")


def test_the_readme_is_short_and_tables_are_readable():
    assert len(README.splitlines()) <= MAX_README_LINES
    for path in [README_PATH, *PAGE_PATHS]:
        for number, line in enumerate(read(path).splitlines(), 1):
            if line.startswith("|"):
                assert len(line) <= MAX_TABLE_ROW, f"{path.name}:{number} is {len(line)} long"


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, - for spaces."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", without_code_blocks(read(path)), re.M):
        base = anchor = slug(heading)
        n = 0
        while anchor in found:
            n += 1
            anchor = f"{base}-{n}"
        found.add(anchor)
    return found


@pytest.mark.parametrize("path", LINKED_PATHS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files_and_headings_that_exist(path):
    targets = re.findall(r"\]\(([^)\s]+)\)", without_code_blocks(read(path)))
    assert targets
    for target in targets:
        if re.match(r"[a-z]+:", target):
            continue
        file, _, fragment = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.exists(), f"{path.name}: {target} leads nowhere"
        assert linked.is_relative_to(ROOT), f"{path.name}: {target} leaves the repository"
        if fragment:
            assert linked.suffix == ".md", f"{path.name}: {target}"
            assert fragment in anchors(linked), f"{path.name}: no heading for {target}"


def test_exported_members():
    assert sorted(backfill.__all__) == sorted(
        [
            "RESULT_COLUMNS",
            "UNSET",
            "AuthError",
            "BackfillError",
            "ConfigError",
            "ExitCode",
            "ExportSummary",
            "JobStatus",
            "LedgerBusy",
            "LedgerError",
            "MappingError",
            "MappingSpec",
            "PlainError",
            "Progress",
            "RateLimited",
            "Rejected",
            "RunSummary",
            "Settings",
            "SourceError",
            "Status",
            "Transient",
            "ValidateSummary",
            "arun",
            "export",
            "load_mapping",
            "preview",
            "resolve",
            "run",
            "status",
            "validate",
        ]
    )
    for name in backfill.__all__:
        assert getattr(backfill, name) is not None


def test_help_and_argument_errors():
    runner = CliRunner()
    result = runner.invoke(cli, ["run", "--help"])
    assert result.exit_code == 0 and "PLAIN_API_KEY" in result.output
    missing = runner.invoke(cli, ["run", "x.csv"])
    assert missing.exit_code == 2 and "--mapping" in missing.output
    bad_rate = runner.invoke(cli, ["run", "x.csv", "-m", "m.toml", "--rate", "fast"], env={})
    assert bad_rate.exit_code == 2 and "not a rate" in bad_rate.output


def test_the_validate_example_in_the_docs_is_real(tmp_path):
    block = PAGES["commands.md"].split(
        "$ backfill validate data/broken_activity.csv --mapping data/mapping.toml\n"
    )[1]
    expected = block.split("```")[0].strip().splitlines()
    result = subprocess.run(
        [sys.executable, "-m", "backfill", "validate", "data/broken_activity.csv"]
        + ["--mapping", "data/mapping.toml", "--results-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    got = result.stdout.strip().splitlines()
    assert got[:-1] == expected[:-1]
    assert got[-1].startswith("invalid rows       ") and got[-1].endswith("/invalid.csv")
