"""Fail if a file imports anything outside the Python standard library.

The runtime is copied into arbitrary model images, so it may rely on nothing
that pip installs. Run with Python 3.10+ (sys.stdlib_module_names).
"""

import ast
import os
import sys


def third_party_imports(path):
    """(line, module) of each import that is neither stdlib nor a module next to path.

    A sibling module is one shipped next to the file, so it may be imported.
    """
    siblings = {name[:-3] for name in os.listdir(os.path.dirname(os.path.abspath(path))) if name.endswith(".py")}
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top not in siblings:
                found.append((node.lineno, name))
    return found


def main(paths):
    failed = False
    for path in paths:
        for lineno, name in third_party_imports(path):
            print(f"{path}:{lineno}: imports {name!r}, which is not in the standard library")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
