"""`evalsuite plan --shards N`: what a CI needs to run a suite as N parallel jobs, as JSON, computed
without exporting, building or scoring.

- `matrix`: one entry per shard (a GitHub `strategy.matrix` as is: `fromJSON(...)`), with the shard's
  index, count and result file;
- `cache`: the cache key, a hash of everything that decides the entries `evalsuite prepare` leaves in
  the cache (the model's origin and tokenizer sha256, the base build's settings, every variant's
  settings and given content, the tokenized texts, the package versions, the evalsuite version, the
  Python and machine), and those inputs themselves, so a changed key says why;
- `commands`: prepare, verify (on arrival), score one shard, merge, gate.

The cache key leaves out what only decides scoring (window, stride, max_tokens, thresholds, tasks):
changing a threshold reuses the prepared cache. Tokens are cached per whole text, so max_tokens is
not part of it either.
"""

from __future__ import annotations

import dataclasses
import platform
import shlex
from pathlib import Path
from typing import Any

from evalsuite import __version__
from evalsuite.cache import key_of, package_versions
from evalsuite.config import Suite
from evalsuite.data import corpora
from evalsuite.errors import UsageError

KEY_SCHEMA = 1  # bump when what `prepare` caches (or how entries are keyed) changes
RESULTS_DIR = "results"


def shard_file(index: int, count: int, folder: str = RESULTS_DIR) -> str:
    return f"{folder}/shard-{index}-of-{count}.json"


def key_inputs(suite: Suite, data_dir: Path | None) -> dict[str, Any]:
    """Everything that decides the prepared cache entries of `suite` (see the module doc)."""
    from evalsuite.gate.binding import model_settings, variant_settings
    from evalsuite.identity import content_identity
    from evalsuite.models.onnx_build import VERSIONED
    from evalsuite.schema import PACKAGES

    # Task requests are tokenized in memory on every run (nothing cached): their data is left out.
    content = content_identity(dataclasses.replace(suite, tasks=()) if suite.eval.datasets or suite.datasets
                               else suite, data_dir)
    model = content["model"]
    if "error" in model:  # a hub id not downloaded yet: keyed by its name until it is
        model = {"unresolved": suite.model.source}
    settings = {k: v for k, v in model_settings(suite).items() if k != "source"}
    variants = {v.name: {**variant_settings(v), **({"given": content["variants"].get(v.name)}
                                                  if v.method == "onnx" else {})} for v in suite.variants}
    calibration = sorted({v.calibration.dataset for v in suite.variants if v.method == "awq"})
    return {
        "schema": KEY_SCHEMA,
        "evalsuite": __version__,
        "model": model,
        "model_settings": settings,
        "base_onnx": content["base_onnx"],
        "runners": sorted(suite.eval.runners),
        "variants": variants,
        "data": content["data"],  # packaged texts by their pinned sha256, others read again
        "calibration": {ref: corpora.packaged_text_sha256(ref) or ref for ref in calibration},
        "bos": suite.eval.bos,
        "versions": package_versions(tuple(sorted({*PACKAGES, *VERSIONED}))),
        "python": ".".join(platform.python_version_tuple()[:2]),
        "machine": platform.machine(),
    }


def cache_key(suite: Suite, data_dir: Path | None) -> str:
    return f"evalsuite-{key_of(key_inputs(suite, data_dir))}"


def plan(suite: Suite, data_dir: Path | None, shards: int, config: Path | None,
         results_dir: str = RESULTS_DIR) -> dict[str, Any]:
    """The plan document `evalsuite plan` prints."""
    if shards < 1:
        raise UsageError(f"--shards must be at least 1, got {shards}")
    if not results_dir or results_dir.startswith("-"):
        raise UsageError(f"--results-dir must name a folder, got {results_dir!r}")
    conf = ["--config", str(config)] if config is not None else []
    files = [shard_file(i, shards, results_dir) for i in range(shards)]
    merged = f"{results_dir}/merged.json"
    inputs = key_inputs(suite, data_dir)
    gate = ["evalsuite", "gate", *conf, "--results", merged, "--json-out", f"{results_dir}/gate.json",
            "--junit", f"{results_dir}/gate.xml", "--markdown", f"{results_dir}/gate.md"]
    def score(shard: str, out: str) -> str:
        return shlex.join(["evalsuite", "eval", *conf, "--shard", shard, "--progress", "plain", "--json-out", out])

    return {
        "shards": shards,
        "matrix": {"include": [{"index": i, "total": shards, "shard": f"{i}/{shards}", "results": f,
                                "command": score(f"{i}/{shards}", f)} for i, f in enumerate(files)]},
        "cache": {"key": f"evalsuite-{key_of(inputs)}", "folder": "$EVALSUITE_CACHE (default ~/.cache/evalsuite)",
                  "inputs": inputs},
        "shard_files": files,
        "merged": merged,
        "commands": {
            "prepare": shlex.join(["evalsuite", "prepare", *conf]),
            "verify": shlex.join(["evalsuite", "prepare", *conf, "--verify"]),
            # one line for every job: --shard auto reads the CI's variables, {index} names the job's file
            "shard": score("auto", f"{results_dir}/shard-{{index}}-of-{{count}}.json"),
            "merge": shlex.join(["evalsuite", "merge", *files, "--json-out", merged]),
            "gate": shlex.join(gate),
        },
        "env": {"shard": "EVALSUITE_SHARD_INDEX (0-based) and EVALSUITE_SHARD_TOTAL from a GitHub matrix; "
                         "GitLab, CircleCI and Buildkite set their own parallel-job variables",
                "cache": "EVALSUITE_CACHE: the folder the prepare job filled, restored under cache.key"},
    }
