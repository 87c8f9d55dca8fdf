"""The package's layers: import-linter's contract in pyproject.toml holds, and it would catch an
upward import; the library leaves logging output to the application."""

import shutil
import subprocess
import sys
from pathlib import Path

import clnet

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess:
    """Run lint-imports with the project's contract on the clnet package found in package_parent."""
    return subprocess.run([str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=package_parent, env={"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)


def test_the_layers_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """A copy of the package whose device module imports the CLI: lint-imports must fail on it."""
    shutil.copytree(ROOT / "clnet", tmp_path / "clnet", ignore=shutil.ignore_patterns("__pycache__"))
    device = tmp_path / "clnet" / "runtime" / "device.py"
    device.write_text(device.read_text() + "\nfrom ..app import cli  # an upward import\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout and "clnet.runtime.device -> clnet.app.cli" in result.stdout


def test_the_library_logger_has_only_a_null_handler_and_the_cli_shows_notes():
    probe = ("import logging, clnet\n"
             "logger = logging.getLogger('clnet')\n"
             "print([type(h).__name__ for h in logger.handlers])\n"
             "from clnet.app import cli\n"
             "cli.show_notes()\n"
             "logger.info('a note')\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['NullHandler']"
    assert result.stderr == "clnet: a note\n"


def test_the_public_api_is_reachable_from_the_top():
    for name in ("Context", "InferenceNetwork", "TrainingNetwork", "FullyConnected", "init", "sgd", "fit", "load",
                 "SGD", "Adam", "Philox", "devices", "tune", "ACTIVATIONS", "COSTS", "INIT_METHODS"):
        assert hasattr(clnet, name), name
