"""The package layers run one way (engine -> calibrate -> kernels -> materials), modules import
each other without cycles, and functions stay short enough to read at once."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
LAYERS = ("materials", "kernels", "calibrate", "engine")      # each may import only those before it
MAX_FUNCTION_LINES = 80


def modules():
    """{dotted module name: path} of every module of the four packages."""
    out = {}
    for pkg in LAYERS:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(path: Path, module: str, top_level_only: bool) -> set[str]:
    """Modules of our packages that ``path`` imports (``from a import b`` counts ``a.b`` when it
    is a module, else ``a``)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    known = modules()
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".")[: -node.level] if not path.name == "__init__.py" else module.split(".")
                base = ".".join(pkg + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in LAYERS)
    return found


def test_imports_point_down_the_layers():
    bad = []
    for name, path in modules().items():
        rank = LAYERS.index(name.split(".")[0])
        for target in imports(path, name, top_level_only=False):
            if LAYERS.index(target.split(".")[0]) > rank:
                bad.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not bad, "imports up the layers:\n" + "\n".join(bad)


@pytest.mark.parametrize("top_level_only", [True, False], ids=["file-level", "all"])
def test_no_import_cycles(top_level_only):
    mods = modules()
    graph = {m: {t for t in imports(p, m, top_level_only) if t in mods and t != m} for m, p in mods.items()}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_functions_are_short():
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_the_checks_can_fail(tmp_path):
    """The import scanner sees a nested upward import and a relative one."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from engine.case import load_case\n    from . import fem\n")
    assert imports(src, "kernels.m", top_level_only=False) == {"engine.case", "kernels.fem"}
    assert imports(src, "kernels.m", top_level_only=True) == set()
