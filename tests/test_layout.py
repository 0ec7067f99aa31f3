"""The architecture's rules, checked on the source: no import cycle between modules, and the numpy stack
(what a matching-only device installs) never imports torch."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "biohash"
NUMPY_STACK = ("types", "codes", "metrics", "scores", "modes", "matching", "scan", "mih", "protect", "store", "store_conn", "access", "errors",
               "registry", "images", "quality")


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """Modules a file imports: at its top only, or anywhere (lazy imports inside functions, and
    importlib.import_module("biohash....") with a literal name)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            out.add(node.args[0].value)
    return out


def test_no_import_cycles_between_modules_lazy_imports_included():
    """main had two, both through imports inside functions: matching <-> mih, and recipes.base -> (by name)
    recipes.builtin -> recipes.distill -> restore -> recipes.base."""
    modules = {_module(p): p for p in SRC.rglob("*.py")}
    graph = {m: {i for i in _imports(p, top_level_only=False) if i in modules and i != m} for m, p in modules.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = path[path.index(n):] + [n] if n in path else [m, n]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_the_numpy_stack_never_imports_torch():
    for name in NUMPY_STACK:
        found = {i for i in _imports(SRC / f"{name}.py", top_level_only=False) if i.split(".")[0] in ("torch", "timm")}
        assert not found, f"biohash.{name} imports {found}"



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


CLI_MODULES = {"cli.py", "cli_deploy.py", "cli_zoo.py", "cli_train.py"}  # typer commands: parameters are options


def test_parameters_past_the_fifth_are_keyword_only():
    """A call with six positional arguments cannot be read without the signature beside it (main constructed
    CoHashNet with nine); past five, parameters are keyword-only."""
    found = []
    for path in SRC.rglob("*.py"):
        if path.name in CLI_MODULES:
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
