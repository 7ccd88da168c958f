"""Build ONNX models with onnxruntime-genai's model builder (fp32 base, int4 variants), cached.

Builds run `python -m onnxruntime_genai.models.builder` in a subprocess (the builder edits sys.path
and holds the whole model in memory; a subprocess isolates both) into a temp folder that is renamed
into the cache only after the result loads and passes `check_model`. Cache key: hash of the source
folder's weights/config/tokenizer, precision, builder options and package versions.

Existing folders and files are resolved and checked by `onnx_files.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from evalsuite.cache import MANIFEST, build_entry, cache_root, key_of, package_versions, reuse
from evalsuite.content_hash import known_sha256
from evalsuite.errors import ModelError
from evalsuite.models.hf_config import builder_input, config_changes
from evalsuite.models.onnx_files import check_loadable, resolve_onnx

BUILDER = "onnxruntime_genai.models.builder"
VERSIONED = ("onnxruntime", "onnxruntime-genai", "onnx", "onnx-ir", "transformers", "torch")
EXECUTION_TARGETS = {"cpu": "cpu", "cuda": "cuda", "dml": "dml"}  # provider -> builder `-e`
FORBIDDEN_OPTIONS = ("prune_lm_head", "exclude_lm_head")  # perplexity needs logits at every position
SCRATCH = "evalsuite-builder-"  # + pid: swept once that process is gone
PR_SET_PDEATHSIG = 1
_hash_memo: dict[tuple[str, float], str] = {}


def source_hash(hf_dir: Path) -> str:
    """Hash of the files a build reads (weights, configs, tokenizer); memoised per process. A cache
    entry's manifest is left out: it records stat stamps, which a copy of the cache changes."""
    files = sorted(p for p in hf_dir.iterdir() if p.is_file() and p.suffix in (".safetensors", ".json", ".model")
                   and p.name != MANIFEST)
    stamp = (str(hf_dir.resolve()), max((p.stat().st_mtime for p in files), default=0.0))
    if stamp not in _hash_memo:
        _hash_memo[stamp] = key_of([(p.name, known_sha256(p)) for p in files])
    return _hash_memo[stamp]


def versions() -> dict[str, str | None]:
    return package_versions(VERSIONED)


def execution_target(provider: str) -> str:
    """The builder target for an ONNX Runtime provider ('cuda' or 'CUDAExecutionProvider' -> 'cuda')."""
    name = provider.lower().removesuffix("executionprovider")
    return name if name in EXECUTION_TARGETS else "cpu"


def build_onnx(hf_dir: Path, precision: str = "fp32", options: dict[str, str] | None = None,
               cache: Path | None = None, execution: str = "cpu") -> Path:
    """Folder with the built `model.onnx` (+ data, genai_config.json); built once per cache key.
    `execution`: the builder's target (`-e`: cpu, cuda, dml), part of the cache key."""
    if execution not in EXECUTION_TARGETS:
        raise ModelError(f"no ONNX build target for execution '{execution}'; use one of {', '.join(EXECUTION_TARGETS)}")
    options = dict(options or {})
    bad = [k for k in options if k in FORBIDDEN_OPTIONS]
    if bad:
        raise ModelError(f"builder option '{bad[0]}' removes per-position logits, which perplexity needs; drop it")
    desc = {"source": source_hash(hf_dir), "precision": precision, "options": options, "v": versions(),
            **({"execution": execution} if execution != "cpu" else {})}  # cpu keys stay as they were
    changes = config_changes(hf_dir)  # config translated for the builder (hf_config.py); none: key unchanged
    key = key_of({**desc, "config_changes": changes} if changes else desc)
    out = (cache or cache_root()) / "onnx" / key
    if reuse(out):
        return out
    sweep_scratch()
    with build_entry(out) as tmp, tempfile.TemporaryDirectory(prefix=f"{SCRATCH}{os.getpid()}-") as scratch:
        builder_dir = builder_input(hf_dir, cache or cache_root())
        seconds = _run_builder(builder_dir, tmp, precision, options, Path(scratch), execution)
        check_model(tmp)
        info = {"source": str(hf_dir), "precision": precision, "execution": execution, "options": options,
                "versions": versions(),
                "build_seconds": round(seconds, 2)}
        (tmp / "evalsuite_build.json").write_text(json.dumps(info, indent=2))
    return out


def _run_builder(hf_dir: Path, out: Path, precision: str, options: dict[str, str], scratch: Path,
                 execution: str = "cpu") -> float:
    cmd = [sys.executable, "-m", BUILDER, "-i", str(hf_dir), "-o", str(out), "-p", precision, "-e", execution,
           "-c", str(scratch)]
    if options:
        cmd += ["--extra_options", *(f"{k}={v}" for k, v in sorted(options.items()))]
    start = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    # Our process group (a CI runner's group kill, SIGKILL included, takes the builder too) and, on
    # Linux, a parent-death signal (a SIGKILL of this process alone takes it as well). On SIGTERM/SIGINT
    # or any error it is terminated before the temp folders are removed.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=scratch,
                            preexec_fn=_die_with_parent(os.getpid()))
    try:
        stdout, stderr = proc.communicate()
    except BaseException:
        _terminate(proc)
        raise
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (stderr or stdout).splitlines() if ln.strip()]
        last = lines[-1][:300] if lines else f"exit code {proc.returncode}"
        raise ModelError(f"the ONNX model builder failed for {hf_dir.name} ({precision}, "
                         f"{options or 'default options'}): {last}; check the model and builder options")
    return time.perf_counter() - start


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec_fn: the child gets SIGKILL when this process dies (prctl PR_SET_PDEATHSIG, Linux).
    prctl is looked up here, in the parent: the forked child only calls it (no import, no dlopen)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def _terminate(proc: subprocess.Popen[str], grace: float = 10.0) -> None:
    """SIGTERM the builder, SIGKILL it after `grace` seconds; reap it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


def sweep_scratch() -> None:
    """Remove builder scratch folders (`$TMPDIR/evalsuite-builder-PID-*`) whose process is gone (a
    SIGKILL leaves them behind: no cleanup code runs)."""
    for path in Path(tempfile.gettempdir()).glob(f"{SCRATCH}*"):
        match = re.match(rf"{SCRATCH}(\d+)-", path.name)
        if match is None or not path.is_dir() or path.is_symlink() or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (PermissionError, OverflowError):
            continue


def check_model(folder: Path) -> None:
    """A fresh build must open in ONNX Runtime and expose what every runner needs (onnx_files.py)."""
    check_loadable(resolve_onnx(folder))
