"""The architecture's rules, checked on the source. The layers, the torch-free match and imaging packages and
the absence of import cycles are import-linter contracts (pyproject.toml, run by `make test`); the tests here
check that those contracts hold and that they bite, and the habits no contract expresses."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "biohash"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path, *contracts: str) -> subprocess.CompletedProcess:
    """Run the project's import contracts (all, or those with the given ids) over the package under root/src."""
    env = {"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(root / "src"), "HOME": str(root)}
    chosen = [arg for c in contracts for arg in ("--contract", c)]
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache", *chosen],
                          cwd=root, env=env, capture_output=True, text=True)


def test_the_import_contracts_hold():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


BREAKS = {  # a deliberate break -> the contract that must catch it
    "torch in match": ("match/codes.py", "\ndef _broken():\n    import torch  # noqa\n", "torch-free"),
    "match imports serve": ("match/scores.py", "\nfrom biohash.serve import store  # noqa\n", "layers"),
    "data imports models": ("train/data/loaders.py", "\ndef _broken():\n    from biohash.train.models import gpa  # noqa\n",
                            "data-without-models"),
    "a lazy cycle": ("match/types.py", "\ndef _broken():\n    from biohash.match import codes  # noqa\n", "acyclic"),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_each_import_contract_catches_a_deliberate_break(tmp_path, name):
    """On a copy of the package, one import against the design (inside a function where that is the sneaky
    way) breaks the contract written for it, and the copy as it was keeps every contract."""
    module, addition, contract = BREAKS[name]
    shutil.copytree(SRC, tmp_path / "src" / "biohash", ignore=shutil.ignore_patterns("__pycache__", "zoo"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "src" / "biohash" / module
    assert _lint_imports(tmp_path, contract).returncode == 0
    target.write_text(target.read_text() + addition)
    result = _lint_imports(tmp_path, contract)
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout


LONG_ON_PURPOSE: set[str] = set()  # functions allowed past 50 lines: none left


def test_short_modules_and_functions():
    for path in SRC.rglob("*.py"):
        lines = len(path.read_text().splitlines())
        assert lines <= 400, f"{path.relative_to(SRC)} has {lines} lines (at most 400)"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                where = f"{path.relative_to(SRC)}:{node.name}"
                assert length <= 50 or where in LONG_ON_PURPOSE, f"{where} has {length} lines (at most 50)"


def test_only_models_touch_the_hash_layer():
    """Export, encoders and recipes read codes through the model's stages (embed_and_code, forward_head)."""
    outside = [p for p in SRC.rglob("*.py") if "models" not in p.parts and ".hash(" in p.read_text()]
    assert not outside, f"reach into a model's hash layer: {[str(p.relative_to(SRC)) for p in outside]}"


def test_no_setting_is_read_from_the_environment_at_import():
    """Settings come in as arguments (or are read when a function runs): a value read at import cannot be
    changed by the caller and differs between processes that imported at different times."""
    found = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
        inside = {id(n) for f in functions for n in ast.walk(f)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and id(node) not in inside):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not found, f"environment read at import: {found}"  # main: images.py:25 (BIOHASH_MAX_PIXELS)


def test_no_module_holds_a_console_or_other_mutable_output_state():
    """Output goes through a Console each job makes (quiet on ranks other than 0); a module-level one whose
    `quiet` flag is toggled (main: jobs.console) leaks one job's setting into the next."""
    found = []
    for path in SRC.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if isinstance(value, ast.Call) and getattr(value.func, "id", getattr(value.func, "attr", "")) == "Console":
                found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not found, found


CLI_COMMANDS = {"main.py", "deploy.py", "zoo.py", "train.py"}  # cli/: typer commands, parameters are options


def test_parameters_past_the_fifth_are_keyword_only():
    """A call with six positional arguments cannot be read without the signature beside it (main constructed
    CoHashNet with nine); past five, parameters are keyword-only."""
    found = []
    for path in SRC.rglob("*.py"):
        if path.parent.name == "cli" and path.name in CLI_COMMANDS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
                if len(names) > 5:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({len(names)})")
    assert not found, found


def test_no_function_rebinds_module_state():
    """No `global` statement: state a function swaps at module level (main: roi's MediaPipe graph, jobs'
    console) is shared by every caller in the process without any of them asking for it."""
    found = [f"{p.relative_to(SRC)}:{n.lineno}" for p in SRC.rglob("*.py") for n in ast.walk(ast.parse(p.read_text()))
             if isinstance(n, ast.Global)]
    assert not found, found
