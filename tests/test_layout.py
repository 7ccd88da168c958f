"""The package layout follows the data: lower layers never import upper ones, and no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "evalsuite"
# corpora -> windows -> models/runners -> scoring -> gate -> report, under the pipeline and the CLI.
RANK = {
    "errors": 0, "tomlio": 0, "jsonio": 0, "cache": 0, "quiet": 0, "cpu": 0, "stages": 0, "": 0,
    "data": 1, "models": 2, "config": 3, "task_config": 3, "quant": 4, "scoring": 4, "gate": 5, "report": 6,
    "suite": 7, "task_suite": 7, "runners": 4, "identity": 8, "bench": 8, "preflight": 8, "cli": 9, "__main__": 9,
    "cli_tools": 9, "cli_args": 9, "cli_checks": 0, "limits": 3, "roles": 0, "bench_ceiling": 8, "bench_tasks": 8,
    "bench_stages": 8, "bench_peers": 8, "content_hash": 0, "ci_shard": 0, "ci_plan": 8, "cli_ci": 9, "prepare": 8,
    "executor_ray": 8, "cli_ray": 9, "schema": 1, "task_api": 4, "ppl_task": 7,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__")


def imports(path: Path) -> set[str]:
    """Every evalsuite module this file imports, at module level or inside functions."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("evalsuite"):
            base = node.module.removeprefix("evalsuite").lstrip(".")
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base else alias.name
                out.add(sub if (PKG / sub.replace(".", "/")).with_suffix(".py").is_file() else base)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; use absolute evalsuite.* imports")
        elif isinstance(node, ast.Import):
            out |= {a.name.removeprefix("evalsuite.") for a in node.names if a.name.startswith("evalsuite.")}
    return out


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) - {module_name(p)} for p in PKG.rglob("*.py")}


def rank(module: str) -> int:
    top = module.split(".")[0]
    assert top in RANK, f"module {module} has no layer in tests/test_layout.py; place it"
    return RANK[top]


def test_lower_layers_never_import_upper_ones() -> None:
    bad = [f"{m} (layer {rank(m)}) imports {d} (layer {rank(d)})"
           for m, deps in graph().items() for d in deps if rank(d) > rank(m)]
    assert not bad, bad


def test_no_import_cycle() -> None:
    g = graph()
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(g.get(node, ())):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(dep):], dep]))
            if dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])


def test_every_subpackage_says_what_it_does() -> None:
    for init in PKG.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init} needs a docstring naming what the package does and exports"


def test_no_module_over_400_lines() -> None:
    """Modules stay readable in one sitting: split one along its jobs before it passes 400 lines."""
    big = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not big, big



ROLE_LITERALS = {"torch", "ort", "base"}  # runner and variant names: evalsuite/roles.py names them once


def role_literals(source: str, name: str) -> list[str]:
    """`name:line 'x'` for every string constant spelling a runner or variant name, docstrings aside."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [f"{name}:{node.lineno} {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in ROLE_LITERALS and id(node) not in docstrings]


def test_gate_and_reports_read_roles_never_spell_them() -> None:
    """Verdicts, reports and plots take the reference, the base and the candidates from the roles
    (the suite's or the document's, evalsuite/roles.py), so adding a runner touches no check or table."""
    files = [p for sub in ("gate", "report") for p in sorted((PKG / sub).rglob("*.py"))]
    assert len(files) > 10
    found = [hit for p in files for hit in role_literals(p.read_text(), str(p.relative_to(PKG)))]
    assert not found, found


def test_role_literal_scan_sees_code_not_docstrings() -> None:
    source = '"""torch"""\n\n\ndef f(x):\n    """base"""\n    return x == "ort" or x.get("base") or f"base/{x}"\n'
    assert role_literals(source, "m.py") == ["m.py:6 'ort'", "m.py:6 'base'"]


def test_pipeline_merge_and_config_take_runner_names_from_roles() -> None:
    """The pipeline, the task pipeline, scoring (merge above all) and the config name runners and the
    base variant through evalsuite/roles.py and the runner registry (runners.KINDS), never as literals."""
    pipeline = ("suite", "task_suite", "ppl_task", "task_api", "config")
    files = [*(PKG / f"{m}.py" for m in pipeline), *sorted((PKG / "scoring").rglob("*.py"))]
    found = [hit for p in files for hit in role_literals(p.read_text(), str(p.relative_to(PKG)))]
    assert not found, found


def test_runner_registry_matches_the_names_roles_give() -> None:
    from evalsuite.roles import BASE_RUNNER, REFERENCE_RUNNER, RUNNER_NAMES
    from evalsuite.runners import KINDS

    assert set(KINDS) == set(RUNNER_NAMES) and {REFERENCE_RUNNER, BASE_RUNNER} <= set(KINDS)
    assert KINDS[BASE_RUNNER].onnx is not None  # the base runner scores the candidates' ONNX folders
