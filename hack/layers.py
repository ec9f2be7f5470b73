"""The layer rules, checked on the source (`make lint` runs it):

- a plan (`*/plan.py`) imports no `kubernetes`, not even through the modules it imports;
- tools (migrator, backup, cleaner) never import each other;
- `common` imports no tool;
- `common/cluster` imports nothing from common but common.errors, and names no Kyma object;
- only the click layer (`cli.py`, `*_cli.py`) imports click;
- common's modules are imported under their own names, everywhere (no `common.cr as crnames`);
- hack/ (the dev environment, demos, benchmarks) imports nothing from tests/.

    python -m hack.layers [ROOT]    # exit 1 naming each violation
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

TOOLS = ("migrator", "backup", "cleaner")
PACKAGES = ("common", *TOOLS)
EVERYWHERE = (*PACKAGES, "hack", "tests")
CLUSTER = "common.cluster"
CLUSTER_MAY_IMPORT = ("common.cluster", "common.errors")
KYMA_WORDS = re.compile(r"kyma|connectivity.?prox", re.IGNORECASE)


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. "backup.plan"
    target: str  # what it imports, e.g. "common.kyma"
    line: int
    top_level: bool  # executed when the module is imported (not in a function, not typing-only)


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: Path, path: Path) -> list[Import]:
    """Every import of one file, with `from package import module` resolved to the module."""
    name = module_name(root, path)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[Import] = []

    def deferred(node: ast.AST) -> bool:
        """Not run when the module is imported: a function's body, a typing-only block."""
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return True
        return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if deferred(child):
                visit(child, False)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(name, alias.name, child.lineno, top))
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                for alias in child.names:
                    candidate = f"{child.module}.{alias.name}"
                    is_module = (root / Path(*candidate.split("."))).with_suffix(".py").is_file()
                    is_package = (root / Path(*candidate.split(".")) / "__init__.py").is_file()
                    target = candidate if is_module or is_package else child.module
                    found.append(Import(name, target, child.lineno, top))
            else:
                visit(child, top)

    visit(tree, True)
    return found


def _within(target: str, package: str) -> bool:
    return target == package or target.startswith(package + ".")


def check(root: Path) -> list[str]:
    """The violations of the layer rules in the tree at `root`, each naming file and line."""
    files = {
        module_name(root, path): path
        for package in PACKAGES
        for path in sorted((root / package).rglob("*.py"))
    }
    graph = {name: imports(root, path) for name, path in files.items()}
    problems: list[str] = []

    def where(found: Import) -> str:
        return f"{files[found.module].relative_to(root)}:{found.line}"

    for name, found_imports in graph.items():
        package = name.partition(".")[0]
        is_cli = Path(files[name]).name == "cli.py" or Path(files[name]).name.endswith("_cli.py")
        for found in found_imports:
            target_package = found.target.partition(".")[0]
            if target_package == "click" and not is_cli:
                problems.append(f"{where(found)}: imports click; only the cli modules may")
            if package == "common" and target_package in TOOLS:
                problems.append(f"{where(found)}: common imports the tool {target_package}")
            if package in TOOLS and target_package in TOOLS and target_package != package:
                problems.append(f"{where(found)}: the tool {package} imports {target_package}")
            allowed = any(_within(found.target, ok) for ok in CLUSTER_MAY_IMPORT)
            if _within(name, CLUSTER) and target_package == "common" and not allowed:
                problems.append(
                    f"{where(found)}: common/cluster imports {found.target} (Kyma "
                    "vocabulary stays out of cluster access)"
                )
        if _within(name, CLUSTER):
            for number, line in enumerate(files[name].read_text().splitlines(), start=1):
                if KYMA_WORDS.search(line):
                    relative = files[name].relative_to(root)
                    problems.append(
                        f"{relative}:{number}: common/cluster names Kyma: {line.strip()}"
                    )
    problems += renamed_common_modules(root)
    problems += hack_importing_tests(root)
    for name in graph:
        if name.rpartition(".")[2] == "plan":
            chain = _kubernetes_chain(name, graph)
            if chain:
                problems.append(
                    f"{files[name].relative_to(root)}: the plan imports kubernetes: "
                    + " -> ".join(chain)
                )
    return problems


def renamed_common_modules(root: Path) -> list[str]:
    """Imports of a common module under another name, in every package and in hack/, tests/."""
    found = []
    for package in EVERYWHERE:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    pairs = [(f"{node.module}.{a.name}", a.name, a.asname) for a in node.names]
                elif isinstance(node, ast.Import):
                    pairs = [(a.name, a.name, a.asname) for a in node.names]
                else:
                    continue
                for target, name, alias in pairs:
                    if _within(target, "common") and alias and alias != name:
                        found.append(
                            f"{path.relative_to(root)}:{node.lineno}: imports {target} as "
                            f"{alias}; common's modules keep their own names"
                        )
    return found


def hack_importing_tests(root: Path) -> list[str]:
    """hack/ serves the tests, never the other way round: an import of tests/ from hack/."""
    found = []
    for path in sorted((root / "hack").rglob("*.py")):
        name = module_name(root, path)
        for each in imports(root, path):
            if _within(each.target, "tests"):
                found.append(
                    f"{path.relative_to(root)}:{each.line}: {name} imports {each.target}; "
                    "hack/ imports nothing from tests/"
                )
    return found


def _kubernetes_chain(start: str, graph: dict[str, list[Import]]) -> list[str] | None:
    """The import path from `start` to `kubernetes`, through module-level imports, or None.
    The plan's own imports count wherever they are."""
    seen = {start}
    queue: list[tuple[str, list[str]]] = [(start, [start])]
    while queue:
        name, path = queue.pop(0)
        for found in graph.get(name, []):
            if not found.top_level and name != start:
                continue
            if _within(found.target, "kubernetes"):
                return [*path, found.target]
            module = found.target
            while module and module not in graph:
                module = module.rpartition(".")[0]
            if module and module not in seen:
                seen.add(module)
                queue.append((module, [*path, module]))
    return None


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1]
    problems = check(root)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} layer rule violation(s); see hack/layers.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
