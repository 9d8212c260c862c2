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


# --------------------------------------------------------------------------------------------
# Real-library runs (the tests that use them run in .venv/train, see test/python/run.sh)
# --------------------------------------------------------------------------------------------

import atexit
import json
import shutil
import subprocess
import tempfile

LOCAL_DIR = os.path.join(REPO_ROOT, "cli", "local")
FIXTURES = os.path.join(REPO_ROOT, "test", "fixtures", "data")
VENV_ROOT = os.environ.get("PHI3_VENV_ROOT", os.path.join(REPO_ROOT, ".venv"))
PROMPTFLOW_BIN = os.path.join(VENV_ROOT, "promptflow", "bin")

_scratch = tempfile.mkdtemp(prefix="phi3-pytest-")
atexit.register(shutil.rmtree, _scratch, True)


def scratch_dir(name):
    """A fresh folder under this test run's scratch space (removed at exit)."""
    path = tempfile.mkdtemp(prefix=name + "-", dir=_scratch)
    return path


def job_env(**extra):
    """Environment for the training scripts: offline hub, file MLflow store in scratch space."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        # A folder MLflow creates itself: an existing empty one has no default experiment.
        MLFLOW_TRACKING_URI="file://" + os.path.join(scratch_dir("mlflow"), "mlruns"),
    )
    env.update(extra)
    return env


def run(args, env=None, cwd=REPO_ROOT, timeout=600, stdin=None):
    """Runs a command; returns the CompletedProcess (text, stdout and stderr captured)."""
    return subprocess.run(args, cwd=cwd, env=env or job_env(), input=stdin, capture_output=True,
                          text=True, timeout=timeout)


def write_hub_like_dataset(folder, rows):
    """A local folder laid out like ultrachat_200k on the hub (``data/train_sft-*.parquet``,
    ``data/test_sft-*.parquet``), which ``datasets.load_dataset(folder, "default", split=...)``
    reads exactly like the hub repository."""
    import datasets

    datasets.disable_progress_bars()
    os.makedirs(os.path.join(folder, "data"), exist_ok=True)
    records = [{"prompt": r["messages"][0]["content"], "prompt_id": str(i), "messages": r["messages"]}
               for i, r in enumerate(rows)]
    datasets.Dataset.from_list(records).to_parquet(os.path.join(folder, "data", "train_sft-00000-of-00001.parquet"))
    datasets.Dataset.from_list(records[:2]).to_parquet(os.path.join(folder, "data", "test_sft-00000-of-00001.parquet"))
    return folder


def read_jsonl(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def promptflow_sandbox(test):
    """A copy of promptflow/ and a private Prompt flow home for one test (removed after it):
    returns ``(flow_dir, env, pf)`` where ``env`` points promptflow at the private home, selects
    keyrings.alt's plain-file keyring (no desktop keyring here) and turns tracing off, and
    ``pf`` is the CLI of .venv/promptflow."""
    work = tempfile.mkdtemp(prefix="pf-", dir=_scratch)
    test.addCleanup(shutil.rmtree, work, True)
    flow = shutil.copytree(PROMPTFLOW_DIR, os.path.join(work, "flow"))
    env = dict(os.environ, PF_HOME_DIRECTORY=os.path.join(work, "home"),
               PYTHON_KEYRING_BACKEND="keyrings.alt.file.PlaintextKeyring", PF_DISABLE_TRACING="true")
    return flow, env, os.path.join(PROMPTFLOW_BIN, "pf")


_trained = {}


def trained_model():
    """The model the rest of the real-library tests use, made once per test run the way a user
    makes one: ``prepare_data.py`` (real ``datasets``) slices a hub-like copy of the example
    data into train/test folders, then ``npm run train:local`` (cli/train-local.ts) validates
    them, builds the tiny Phi-3 and runs the real ``fine_tune.py``. Returns a dict with
    ``model`` (the MLflow model folder), ``prep`` (the prepare_data.py result), ``train``
    (the train:local result), ``train_dir`` / ``test_dir``, ``tracking_uri`` (its MLflow store)."""
    if _trained:
        return _trained
    work = scratch_dir("trained")
    rows = read_jsonl(os.path.join(FIXTURES, "train.jsonl"))
    hub = write_hub_like_dataset(os.path.join(work, "ultrachat"), rows)
    train_dir, test_dir = os.path.join(work, "train"), os.path.join(work, "test")
    prep = run([sys.executable, "prepare_data.py", "--dataset", hub, "--split", "train_sft[:75%]",
                "--train-output", train_dir, "--test-output", test_dir], cwd=FINETUNING_DIR)
    if prep.returncode != 0:
        raise AssertionError("prepare_data.py failed:\n" + prep.stderr[-3000:])
    model = os.path.join(work, "model")
    env = job_env()
    train = run(["npx", "--no-install", "tsx", "cli/train-local.ts", "--train-file", train_dir,
                 "--eval-file", test_dir, "--output", model, "--max-seq-length", "128"], env=env)
    if train.returncode != 0:
        raise AssertionError("train:local failed:\n" + train.stderr[-5000:])
    # tracking_uri: the MLflow file store the run was logged to (test_rollout.py serves it with `mlflow server`).
    _trained.update(model=model, prep=prep, train=train, train_dir=train_dir, test_dir=test_dir,
                    tracking_uri=env["MLFLOW_TRACKING_URI"])
    return _trained
