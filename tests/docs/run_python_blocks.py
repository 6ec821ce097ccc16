"""Run README.md's ```python blocks of one section in order, in one namespace, as a reader would paste them.

Used by tests/test_readme.py as ``python tests/docs/run_python_blocks.py BLOCKS.json``: the file holds
``[{"line": N, "code": "...", "imports_only": bool}, ...]``. Each block is compiled with README.md as its
file name and its own line numbers, so a traceback names the README line that failed. A block marked
``<!-- not-run: ... -->`` comes with ``imports_only``: only its import statements run (the names it uses
must still exist). An optional ``epilogue`` (the test's own checks, not README text) runs last in the
same namespace.
"""

from __future__ import annotations

import ast
import json
import sys


def main(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    namespace: dict[str, object] = {"__name__": "__main__"}
    for block in spec["blocks"]:
        source = "\n" * (block["line"] - 1) + block["code"]
        tree = ast.parse(source, "README.md")
        if block["imports_only"]:
            tree.body = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        exec(compile(tree, "README.md", "exec"), namespace)
    if spec.get("epilogue"):
        exec(compile(spec["epilogue"], "tests/test_readme.py (epilogue)", "exec"), namespace)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
