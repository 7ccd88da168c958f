"""Runner factories of the pipeline: the torch reference, the ORT base and ORT variants, each with
the identity its journal records are keyed by (model content, settings, versions, CPU ISA).

`KINDS` is the registry the pipeline makes runners from, by the names the suite and its roles give
(`roles.RunnerName`): a new runner is a module in `models/` plus one `RunnerKind` entry here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.cache import manifest_digest, package_versions
from evalsuite.config import Suite
from evalsuite.cpu import cpu_key
from evalsuite.errors import UsageError
from evalsuite.models import source as model_source
from evalsuite.models.ort_runner import OrtRunner
from evalsuite.models.torch_runner import TorchRunner


def build_base_onnx(suite: Suite, source: model_source.ModelSource) -> Path:
    """The ORT base: the configured existing ONNX folder, else an fp32 build of the source."""
    from evalsuite.models.onnx_build import build_onnx, execution_target

    if suite.model.onnx:
        return Path(suite.model.onnx).expanduser()
    return build_onnx(source.path, suite.model.base_precision, execution=execution_target(suite.eval.provider))


def torch_runner(suite: Suite, source: model_source.ModelSource) -> Any:
    device = torch_device(suite)
    runner = TorchRunner(source.path, suite.eval.threads, suite.model.trust_remote_code, device)
    # A GGUF's exported folder is part of the identity: a rebuilt export never reuses older records.
    export = manifest_digest(source.path) if source.kind == "gguf" else None
    runner.identity = {"runner": TorchRunner.name, "model": source.origin_sha256, "export": export,
                       "threads": suite.eval.threads, "versions": package_versions(("torch", "transformers")),
                       "cpu": cpu_key(), "device": device, "batch_size": suite.eval.batch_size}
    return runner


def torch_device(suite: Suite) -> str:
    """The torch reference's device; an explicit 'cuda' without a CUDA torch is a usage error."""
    want = suite.eval.torch_device
    if want == "cpu" or (want == "auto" and suite.eval.provider.lower() != "cuda"):
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if want == "cuda":
        raise UsageError("--torch-device cuda, but this torch has no CUDA device; install a CUDA build of torch "
                         "(see README, Installing) or use --torch-device cpu")
    return "cpu"


def ort_runner(suite: Suite, onnx_dir: Path) -> Any:
    runner = OrtRunner(onnx_dir, suite.eval.provider, suite.eval.threads)
    # The CPU's ISA is part of the identity: MLAS kernels (int4 above all) round differently per ISA,
    # so per-window records from one CPU are never reused on another (a cache shared across machines).
    # The in-memory graph edits (logits_tail.py) are part of it: their records are never mixed with others.
    runner.identity = {"runner": OrtRunner.name, "model": onnx_identity(onnx_dir), "provider": suite.eval.provider,
                       "graph": {"head_sliced": runner.keep, "packed": runner.feeds_spec["pack"]},
                       "threads": suite.eval.threads, "versions": package_versions(("onnxruntime",)),
                       "cpu": cpu_key(), "batch_size": suite.eval.batch_size}
    return runner


def onnx_identity(path: Path) -> str:
    """Folders built by evalsuite: their build key and verified manifest (so a rebuild never reuses
    records of an earlier build); any other model (a folder or a file) is identified by the content
    of the one file scored and its external data."""
    from evalsuite.cache import cache_root
    from evalsuite.models.onnx_files import content_sha256, resolve_onnx

    if path.is_dir() and cache_root().resolve() in path.resolve().parents:
        digest = manifest_digest(path)
        if digest is not None:
            return f"{path.name}:{digest}"
    return content_sha256(resolve_onnx(path))




def check_provider(suite: Suite) -> None:
    from evalsuite.models.ort_runner import provider_name

    provider_name(suite.eval.provider)


@dataclass(frozen=True)
class RunnerKind:
    """How the pipeline makes one kind of runner, before and after any model work."""

    name: str  # the runner's `name`, as suites, roles and results spell it
    stage: str  # the progress label of building and loading its base model
    check: Callable[[Suite], object]  # raise UsageError before any model work (device, provider)
    base: Callable[[Suite, model_source.ModelSource], Any]  # the base model on this runner
    onnx: Callable[[Suite, Path], Any] | None = None  # an ONNX folder (a variant); None: scores no variant


# In the order their checks run (load_texts): the provider before the torch device.
KINDS: dict[str, RunnerKind] = {kind.name: kind for kind in (
    RunnerKind(OrtRunner.name, "ORT base: fp32 ONNX build (cached after the first run) and load", check_provider,
               lambda suite, source: ort_runner(suite, build_base_onnx(suite, source)), ort_runner),
    RunnerKind(TorchRunner.name, "torch reference: load model", torch_device, torch_runner),
)}
