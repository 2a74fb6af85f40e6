"""No import cycles in the package, lazy imports included: a module imports only modules below it.

The graph is read from the source (ast), not from what happens to be imported:
a function-level import is a dependency too, only a later one, and a cycle
through it is one a refactor can turn into an ImportError at start-up. Imports
under `if TYPE_CHECKING:` count as well: they say which module knows which.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import prime_billing
from conftest import SCRIPTS, assert_one_line_error, run, script_env

PACKAGE_DIR = Path(prime_billing.__file__).resolve().parent


def module_name(path: Path, root: Path, package: str) -> str:
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The package's modules that one import statement loads (relative ones resolved).

    `from . import x` is module `x` when there is one, else a name of the package itself."""
    top = module.split(".")[0]
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name.split(".")[0] == top}
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    if target.split(".")[0] != top:
        return set()
    return {f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names}


def module_graph(root: Path = PACKAGE_DIR, package: str = "prime_billing") -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports, anywhere in its file."""
    files = {module_name(p, root, package): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= imported(node, name, path.name == "__init__.py", modules)
        graph[name] = {e for e in edges if e != name and e in modules}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path that ends where it starts (a, b, a), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_package_has_no_import_cycle() -> None:
    cycle = find_cycle(module_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_walk_sees_lazy_relative_and_type_checking_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("def f():\n    from .sub import high\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "high.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import low\nimport os\n"
    )
    graph = module_graph(pkg, "pkg")
    assert graph["pkg.low"] == {"pkg.sub.high"} and graph["pkg.sub.high"] == {"pkg.low"}
    assert find_cycle(graph) == ["pkg.low", "pkg.sub.high", "pkg.low"]
    assert find_cycle({**graph, "pkg.low": set()}) is None


def test_the_cycles_this_package_had_stay_broken() -> None:
    graph = module_graph()
    # the models know nothing of text; the launcher's command knows nothing of the CLI
    assert "prime_billing.render" not in graph["prime_billing.models"]
    for model in ("reconcile", "spend", "budget", "runway", "pace", "report"):
        assert "prime_billing.render" not in graph[f"prime_billing.{model}"]
    assert "prime_billing.cli" not in graph["prime_billing.serve.command"]
    # and the walk sees the lazy import the other way round
    assert "prime_billing.serve.command" in graph["prime_billing.cli"]
    # the advice words come down to wording, which imports nothing above it
    assert graph["prime_billing.wording"] == set() and "prime_billing.wording" in graph["prime_billing.operations"]
    # the version is a leaf every module may read, and so is the escaping of upstream text
    assert graph["prime_billing.__version__"] == set()
    assert graph["prime_billing.untrusted"] == set()
    # the CSV writing is the reports' own: the plans that page through a wallet know nothing of it
    assert "prime_billing.export" not in graph["prime_billing.compose"]


def test_the_serve_script_still_answers_under_its_own_name(home: Path) -> None:
    """scripts/serve.py reaches the serve command through the CLI's entry now, not the other way round."""
    helped = run([str(SCRIPTS / "serve.py"), "--help"], script_env(home))
    assert helped.returncode == 0 and helped.stdout.startswith("usage: serve.py ")
    assert "--rest-port N" in helped.stdout and "--only {rest,mcp}" in helped.stdout
    assert_one_line_error(run([str(SCRIPTS / "serve.py"), "--bogus"], script_env(home)), 2, "serve.py: error: ")


TEST_SUPPORT = {"prime_billing.sandbox.faults", "prime_billing.sandbox.server"}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module `start` may load, lazy imports included."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph.get(todo.pop(), set()) - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_client_can_never_load_the_fault_injector_or_the_socket_server() -> None:
    graph = module_graph()
    assert "prime_billing.sandbox" in reachable(graph, "prime_billing.client")  # `--sandbox`, in process
    for runtime in ("prime_billing.client", "prime_billing.langchain", "prime_billing.operations"):
        assert not reachable(graph, runtime) & TEST_SUPPORT, runtime
    # only the commands that serve the sandbox on a socket reach them
    assert TEST_SUPPORT.issubset(reachable(graph, "prime_billing.cli"))
    assert TEST_SUPPORT.issubset(reachable(graph, "prime_billing.serve.runner"))


def test_a_sandbox_command_runs_without_loading_them(home: Path) -> None:
    """`wallet --sandbox` through the whole CLI (every parser built, the demo data answering)."""
    code = (
        "import sys\n"
        "from prime_billing.cli import main\n"
        "code = main(['wallet', '--sandbox', '--json'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('prime_billing.sandbox')), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    out = run(["-c", code], script_env(home))
    assert out.returncode == 0 and '"sandbox": true' in out.stdout, out.stderr
    assert out.stderr.strip().splitlines()[-1] == "['prime_billing.sandbox', 'prime_billing.sandbox.data']"


#: what only the reports need: a script answering a wallet page or a run never loads them
REPORT_MODULES = frozenset(
    f"prime_billing.{m}"
    for m in ("compose", "spend", "reconcile", "runway", "pace", "budget", "report", "render", "export")
)


@pytest.mark.parametrize(
    ("script", "args"), [("wallet.py", ["--json"]), ("run_usage.py", ["rft_sbx_completed", "--json"])]
)
def test_a_script_answering_one_page_loads_no_report_and_no_bar(home: Path, script: str, args: list[str]) -> None:
    """Scripts are run many times: their start-up is the modules they load. The reports' modules
    (and the progress bar's library) load only when a report is asked for."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = [{script!r}, '--sandbox', *{args!r}]\n"
        "try:\n"
        f"    runpy.run_path({str(SCRIPTS / script)!r}, run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "print(sorted(m for m in sys.modules if m.startswith('prime_billing') or m == 'tqdm'), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    out = run(["-c", code], script_env(home))
    assert out.returncode == 0 and '"sandbox": true' in out.stdout, out.stderr
    loaded = set(ast.literal_eval(out.stderr.strip().splitlines()[-1]))
    assert "prime_billing.operations" in loaded  # the walk saw the run
    assert not loaded & (REPORT_MODULES | {"tqdm"}), loaded & REPORT_MODULES
    assert "prime_billing.untrusted" not in loaded  # upstream text is escaped for text only, never for JSON


def test_a_report_loads_its_module_when_asked_for() -> None:
    """The table names a report's model and plan by reference: each resolves to its module's own."""
    from prime_billing.operations import OPERATIONS

    for op in OPERATIONS:
        if op.composite:
            module = op.answer.partition(":")[0].lstrip(".")
            assert op.model.__module__ == op.compose.__module__ == f"prime_billing.{module}", op.name
