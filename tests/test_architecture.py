"""The layout promises of the catalog issue, checked on the source: no import circles, each
activation's constants written once, backends built in one place."""

import ast
import re
from pathlib import Path

HARNESS = Path(__file__).resolve().parent.parent / "harness"


def _module_name(path: Path) -> str:
    parts = path.relative_to(HARNESS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """harness module -> the harness modules it imports, at module level or inside functions
    (a lazy import still makes a circle), not under ``if TYPE_CHECKING``."""
    mods = {_module_name(p): p for p in HARNESS.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        pkg = m if path.name == "__init__.py" else m.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for node in ast.walk(tree)
                       if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                       for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in typing_only or not isinstance(node, ast.ImportFrom) or not node.level:
                continue
            base = pkg.split(".")[:len(pkg.split(".")) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
            for dep in (subs if len(subs) == len(node.names) else [target, *subs]):
                if dep in mods and dep != m:
                    graph[m].add(dep)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_the_circle_check_can_fail():
    graph = import_graph()
    graph["harness.model"].add("harness.directional")
    graph["harness.directional"].add("harness.model")
    assert ["harness.directional", "harness.model"] in cycles(graph)


def test_activation_constants_live_in_the_catalog_only():
    """The 0.01 slope and gelu's 0.044715 are written in activations.py and nowhere else: the
    backends take the framework forms from there."""
    for path in HARNESS.rglob("*.py"):
        if path.name == "activations.py":
            continue
        code = "\n".join(line.split("#")[0] for line in path.read_text().splitlines())
        assert not re.search(r"0\.01 ?\*|\* ?0\.01\b|, ?0\.01\)|0\.044715|alpha=1\.0", code), path


def test_backends_are_built_in_one_place():
    """Only backends/build.py builds IsolatedBackend or calls the registry's get() for a run."""
    builders = []
    for path in HARNESS.rglob("*.py"):
        if path.name in ("build.py", "isolated.py"):
            continue
        if re.search(r"IsolatedBackend\(", path.read_text()):
            builders.append(path.name)
    assert builders == []


def test_claims_ask_for_the_declared_jacobian_protocol():
    """What claims need from a backend (its Jacobian) is part of the declared protocol: a
    backend without it is refused up front, not met with an AttributeError halfway."""
    import pytest

    from harness.backends import JacobianBackend, get
    from harness.claims import run_claims

    assert isinstance(get("fd"), JacobianBackend) and not isinstance(get("manual"), JacobianBackend)
    with pytest.raises(TypeError, match="jacobian"):
        run_claims({"manual": get("manual")})
