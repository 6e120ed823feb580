"""The project's import graph, read from the source (every import, also those inside functions): no cycle between
modules, and no import running upward through the layers core < methods | model | dataset < trainer < scripts <
train.py (methods, model and dataset independent of each other). import-linter checks the layers too (CI); this
test also sees the imports it skips and the cycles inside a layer."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = {"core": 0, "methods": 1, "model": 1, "dataset": 1, "trainer": 2, "scripts": 3, "train": 4}


def project_modules(root: str = ROOT) -> dict[str, str]:
    """{dotted module name: path} of every module of the layers."""
    modules = {"train": os.path.join(root, "train.py")}
    for package in LAYERS:
        folder = os.path.join(root, package)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py"):
                module = package if name == "__init__.py" else f"{package}.{name[:-3]}"
                modules[module] = os.path.join(folder, name)
    return modules


def imports_of(path: str, modules: dict) -> set[str]:
    """The project modules a file imports: `import a.b`, `from a.b import c` (c a module if it is one, else a.b)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                     for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def import_graph(root: str = ROOT, registry: bool = True) -> dict[str, set[str]]:
    """Module -> the project modules it imports. With `registry`: also the modules core.registry names as strings
    ("module:Class"), as imports of the functions that import them (methods.method_class, trainer.families.family),
    so that the layers and cycles of those imports are checked too."""
    modules = project_modules(root)
    graph = {module: imports_of(path, modules) - {module} for module, path in modules.items()}
    if registry:
        for resolver, named in registry_imports().items():
            graph[resolver] |= named - {resolver}
    return graph


def registry_imports() -> dict[str, set[str]]:
    from core.registry import BACKBONES, METHODS

    return {"methods": {entry.implementation.split(":")[0] for entry in METHODS.values()},
            "trainer.families": {entry.family.split(":")[0] for entry in BACKBONES.values()}}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports from a layer to a higher one, or between two packages of the same layer."""
    def layer(module):
        return module.split(".")[0]

    return sorted((a, b) for a, targets in graph.items() for b in targets
                  if layer(a) != layer(b) and LAYERS[layer(b)] >= LAYERS[layer(a)])


def test_the_checks_find_a_cycle_and_an_upward_import():
    graph = {"core.a": {"trainer.b"}, "trainer.b": {"trainer.c"}, "trainer.c": {"trainer.b"}, "model.x": {"dataset.y"},
             "dataset.y": set()}
    assert cycles(graph) == [["trainer.b", "trainer.c"]]
    assert upward(graph) == [("core.a", "trainer.b"), ("model.x", "dataset.y")]


def test_imports_inside_functions_count(tmp_path):
    (tmp_path / "core").mkdir()
    (tmp_path / "trainer").mkdir()
    (tmp_path / "train.py").write_text("")
    (tmp_path / "core" / "__init__.py").write_text("")
    (tmp_path / "core" / "a.py").write_text("def f():\n    from trainer import b\n    import trainer.c\n")
    (tmp_path / "trainer" / "b.py").write_text("from core.a import f\n")
    (tmp_path / "trainer" / "c.py").write_text("")
    graph = import_graph(str(tmp_path), registry=False)
    assert graph["core.a"] == {"trainer.b", "trainer.c"}
    assert cycles(graph) == [["core.a", "trainer.b"]]


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_no_import_cycle_between_modules(graph):
    assert len(graph) > 60  # the whole project was read
    assert cycles(graph) == []


def test_no_import_runs_upward(graph):
    assert upward(graph) == []


def test_every_task_of_the_config_has_its_task_class():
    from core.schema import TASKS
    from trainer.tasks import TASKS as TASK_CLASSES

    assert tuple(TASK_CLASSES) == TASKS


def test_every_class_the_registry_names_is_there_and_of_its_kind(graph):
    from core.registry import BACKBONES, METHODS
    from methods import method_class
    from methods.base import Method
    from trainer.families import family

    for name in METHODS:
        assert issubclass(method_class(name), Method)
    for name in BACKBONES:
        assert callable(family(name).classifier)
    named = set().union(*registry_imports().values())
    assert named <= set(graph)  # each a module the graph has read
