"""The package's layers (pyproject.toml's import-linter contracts) hold, and a wrong
arrow breaks them: lint-imports runs on a copy of the package with one bad import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The command scripts/test.sh runs, from this interpreter's environment.
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "backfill", tmp_path / "backfill", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _add_import(module: Path, line: str) -> None:
    text = module.read_text(encoding="utf-8")
    head, sep, rest = text.partition("from __future__ import annotations\n")
    module.write_text(head + sep + line + "\n" + rest, encoding="utf-8")


def test_the_package_keeps_its_layers(copy):
    result = _lint(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout and "Contracts: 4 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "refused"),
    [
        pytest.param(
            "models.py",
            "import backfill.cli",
            "backfill.models is not allowed to import backfill.cli",
            id="core-imports-a-face",
        ),
        pytest.param(
            "readers/csv.py",
            "import backfill.ledger",
            "backfill.readers is not allowed to import backfill.ledger",
            id="edge-imports-edge",
        ),
        pytest.param(
            "cli.py",
            "import backfill.job",
            "backfill.cli is not allowed to import backfill.job",
            id="face-skips-the-api",
        ),
        pytest.param(
            "fakeplain/store.py",
            "import backfill.plain",
            "backfill.fakeplain is not allowed to import backfill.plain",
            id="fake-uses-client-code",
        ),
    ],
)
def test_a_wrong_arrow_breaks_a_contract(copy, module, line, refused):
    _add_import(copy / "backfill" / module, line)
    result = _lint(copy)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert refused in " ".join(result.stdout.split()), result.stdout
