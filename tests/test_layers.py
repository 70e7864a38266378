"""The house in layers (docs/architecture.md): every import points down.

    pacsweb/                 wiring: settings, urls, wsgi, the access middleware
    api/  dicom/  console/  mllp/   transports; none imports another
    cluster/                 the distributed runtime
    archive/                 the core

Read from the source with `ast`, nothing imported: an import inside a function
counts like any other, so a circle cannot hide in one.
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAYER = {"archive": 0, "cluster": 1, "api": 2, "dicom": 2, "console": 2, "mllp": 2, "pacsweb": 3}
TRANSPORTS = {"api", "dicom", "console", "mllp"}
# Every layer reads the settings; they are configuration, not code above it.
EVERYONE_MAY_IMPORT = {"pacsweb.settings"}


def first_party_files():
    for package in LAYER:
        for path in sorted((REPO / package).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def module_name(path):
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in first_party_files()}


def resolve(name):
    """The first-party module an imported name lives in (a module, or its package)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module):
    """(imported module, line, inside a function) for each first-party import of the module."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            targets = []
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] + ([base] if base else []))
                targets = [f"{base}.{alias.name}" for alias in child.names]
            for target in targets:
                if target.split(".")[0] in LAYER:
                    resolved = resolve(target)
                    if resolved and resolved != module:
                        found.append((resolved, child.lineno, nested))
            visit(child, nested)

    visit(tree, False)
    return sorted(set(found))


GRAPH = {module: imports_of(module) for module in MODULES}


def top(module):
    return module.split(".")[0]


def test_no_import_points_up_or_sideways():
    wrong = []
    for module, imports in GRAPH.items():
        for target, line, _ in imports:
            if target in EVERYONE_MAY_IMPORT or top(target) == top(module):
                continue
            if LAYER[top(target)] >= LAYER[top(module)]:
                wrong.append(f"{MODULES[module].relative_to(REPO)}:{line} imports {target}")
    assert not wrong, "imports that do not point down:\n" + "\n".join(wrong)


def test_transports_never_import_each_other():
    wrong = [f"{MODULES[module].relative_to(REPO)}:{line} imports {target}"
             for module, imports in GRAPH.items() for target, line, _ in imports
             if top(module) in TRANSPORTS and top(target) in TRANSPORTS and top(target) != top(module)]
    assert not wrong, "\n".join(wrong)


def test_no_circle_between_modules_even_through_an_import_inside_a_function():
    circles = []
    state = {}
    stack = []

    def walk(module):
        state[module] = "open"
        stack.append(module)
        for target, _, _ in GRAPH[module]:
            if state.get(target) == "open":
                circles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                walk(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            walk(module)
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_checker_sees_what_it_must():
    # The rules above hold only if the walk finds imports at all, inside functions too.
    edges = {(module, target) for module, imports in GRAPH.items() for target, _, _ in imports}
    assert ("archive.ingest", "archive.storage") in edges
    inside = {(module, target) for module, imports in GRAPH.items() for target, _, nested in imports if nested}
    assert inside, "no import inside a function was seen"
