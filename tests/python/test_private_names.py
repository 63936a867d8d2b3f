"""No module reaches into another's private names (issue 10), tests included.

A private name is one with a single leading underscore that one of the
package's modules defines (a function, class, module global, attribute or
method). Every Python file of the package, its tests, the bench and the
tools may use such a name only if it defines that name itself: through
`from kerasbackup... import _x` or `anything._x`, nothing else may.
"""

import ast
import os

from conftest import INST_PYTHON

ROOT = os.path.dirname(os.path.dirname(INST_PYTHON))
PACKAGE = os.path.join(INST_PYTHON, "kerasbackup")
SCANNED = [PACKAGE, os.path.join(ROOT, "tests", "python"), os.path.join(ROOT, "bench"),
           os.path.join(ROOT, "tools")]


def _private(name):
    return name.startswith("_") and not name.startswith("__")


def _python_files(folder):
    for parent, _, files in os.walk(folder):
        for f in sorted(files):
            if f.endswith(".py"):
                yield os.path.join(parent, f)


def _parse(path):
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), path)


def _defined(tree):
    """The private names a file defines: defs, classes, globals, attributes."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kerasbackup"):
                continue  # taking a name is not defining it
            names.update(a.asname or a.name.split(".")[0] for a in node.names)
    return {n for n in names if _private(n)}


def _uses(tree):
    """(line, name) of each private name a file takes from elsewhere."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kerasbackup"):
            for alias in node.names:
                if _private(alias.name):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            yield node.lineno, node.attr


def cross_module_uses(files):
    """`path:line: name` for each use of another module's private name."""
    package_files = list(_python_files(PACKAGE))
    trees = {path: _parse(path) for path in set(files) | set(package_files)}
    defined = {path: _defined(tree) for path, tree in trees.items()}
    package_private = set().union(*(defined[p] for p in package_files))
    found = []
    for path in files:
        for line, name in _uses(trees[path]):
            if name in package_private and name not in defined[path]:
                found.append(f"{os.path.relpath(path, ROOT)}:{line}: {name}")
    return found


def test_no_module_uses_another_modules_private_names():
    files = [f for folder in SCANNED for f in _python_files(folder)]
    assert len(files) > 40
    assert cross_module_uses(files) == []


def test_the_check_finds_a_use_of_another_modules_private_name(tmp_path):
    # The check itself can fail: a test module reaching into the saver.
    bad = tmp_path / "test_bad.py"
    bad.write_text("from kerasbackup import saver\n"
                   "from kerasbackup.saver import _take_host_buffers\n"
                   "saver._POOL.clear()\n")
    assert cross_module_uses([str(bad)]) == [
        f"{os.path.relpath(str(bad), ROOT)}:2: _take_host_buffers",
        f"{os.path.relpath(str(bad), ROOT)}:3: _POOL",
    ]
