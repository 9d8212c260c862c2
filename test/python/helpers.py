"""Shared helpers for the stdlib unit tests of finetuning_dir/ and promptflow/."""

import ast
import contextlib
import io
import os
import sys

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FINETUNING_DIR = os.path.join(REPO_ROOT, "finetuning_dir")
PROMPTFLOW_DIR = os.path.join(REPO_ROOT, "promptflow")


def add_to_path(folder):
    """Puts ``folder`` first on sys.path (once)."""
    if folder not in sys.path:
        sys.path.insert(0, folder)


def top_level_imports(path):
    """Root module names imported at module level (outside functions/classes) by ``path``,
    including those inside top-level try/except blocks."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), filename=path)
    names = []

    def visit(nodes, guarded):
        for node in nodes:
            if isinstance(node, ast.Import):
                names.extend((alias.name.split(".")[0], guarded) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level == 0 and node.module:
                    names.append((node.module.split(".")[0], guarded))
            elif isinstance(node, ast.Try):
                visit(node.body, True)
                for handler in node.handlers:
                    visit(handler.body, True)
                visit(node.orelse, guarded)
                visit(node.finalbody, guarded)
            elif isinstance(node, ast.If):
                visit(node.body, guarded)
                visit(node.orelse, guarded)

    visit(tree.body, False)
    return names


@contextlib.contextmanager
def quiet_stderr():
    """Swallows argparse's usage messages."""
    saved = sys.stderr
    sys.stderr = io.StringIO()
    try:
        yield sys.stderr
    finally:
        sys.stderr = saved
