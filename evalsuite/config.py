"""The suite config: typed frozen dataclasses loaded strictly from TOML (see tomlio.py).

The default suite ships inside the package (`default_suite.toml`); `--config FILE` replaces it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from evalsuite import tomlio
from evalsuite.errors import ConfigError
from evalsuite.limits import Thresholds, check_range
from evalsuite.models.source import DEFAULT_MODEL
from evalsuite.roles import BASE_VARIANT, RUNNER_NAMES, Roles, RunnerName
from evalsuite.task_config import TaskCfg, TaskParity, TaskThresholds, check_tasks

DEFAULT_SUITE = Path(__file__).resolve().parent / "default_suite.toml"
NAME = re.compile(r"[A-Za-z0-9._-]+")  # variant names: shown in tables (rich markup) and file names
MIN_TOKENS = 3  # 2 scored targets: the fewest a standard error (and a finite results JSON) needs
# Names results, tables and checks use for the base model, its runners and stored documents: a variant
# named after one would be compared with itself or read as the base.
ROLE_NAMES = (BASE_VARIANT, *RUNNER_NAMES, "reference", "baseline", "parity", "variant", "variants", "all")


@dataclass(frozen=True)
class ModelCfg:
    source: str = DEFAULT_MODEL  # HF folder, .gguf, hub id: weights for torch, tokenizer for all
    onnx: str | None = None  # an existing ONNX folder to score as the ORT base (default: build one)
    trust_remote_code: bool = False
    # Precision of the ORT base built from `source`: fp16 is what GPU users ship (provider "cuda").
    base_precision: Literal["fp32", "fp16"] = "fp32"


@dataclass(frozen=True)
class EvalCfg:
    datasets: tuple[str, ...] = ("wikitext2", "ptb")
    window: int = 512
    stride: int = 256
    max_tokens: int | None = None  # absent = whole split
    bos: bool = False
    runners: tuple[RunnerName, ...] = RUNNER_NAMES
    provider: str = "cpu"
    threads: int | None = None
    # Windows of equal shape scored together in one session.run / one torch forward (GPUs need it;
    # on CPU it trades memory, b x k x vocab float32 logits per lane, for little speed).
    batch_size: int = 1
    # The torch reference's device: "auto" = CUDA when provider is "cuda" and torch has CUDA, else CPU.
    torch_device: Literal["auto", "cpu", "cuda"] = "auto"
    documents: bool = False  # score each row/document separately from a prefix token (lm-eval rolling)

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < MIN_TOKENS:
            raise ValueError(f"max_tokens must be at least {MIN_TOKENS} (at least 2 scored tokens are needed "
                             f"for an error bar), got {self.max_tokens}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1 (or absent: all cores), got {self.threads}")
        if not 1 <= self.batch_size <= 256:
            raise ValueError(f"batch_size must be between 1 and 256, got {self.batch_size}")


LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class HubSource:
    """`datasets.load_dataset(path, name, split=split, revision=revision, data_dir=data_dir)[column]`."""

    path: str
    name: str | None = None
    split: str = "test"
    column: str = "text"
    revision: str | None = None
    data_dir: str | None = None


@dataclass(frozen=True)
class DatasetCfg:
    """A dataset beyond the packaged TOMLs (`[[datasets]]`, `--text`): exactly one of `text` (a local
    UTF-8 file, one stream), `data_files` (local parquet/json/csv/text files read by `datasets`' file
    builders) or `hub`. Rows are joined with `join` into one stream, or scored one by one (`documents`)."""

    label: str | None = None  # default: derived from the file name / hub path
    text: str | None = None
    data_files: str | tuple[str, ...] | None = None
    format: Literal["parquet", "json", "csv", "text"] | None = None  # default: from the file extension
    split: str = "train"  # the split `datasets` names data_files (one list of files -> "train")
    column: str = "text"
    hub: HubSource | None = None
    join: str = "\n\n"
    documents: bool | None = None  # default: [eval] documents
    sha256: str | None = None  # optional pin of a `text` file

    def __post_init__(self) -> None:
        given = [k for k in ("text", "data_files", "hub") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a [[datasets]] entry needs exactly one of text, data_files, hub; got "
                             f"{', '.join(given) or 'none'}")
        if self.label is not None and not LABEL_RE.fullmatch(self.label):
            raise ValueError(f"dataset label '{self.label}' must be letters, digits, '_', '.', '-' (no ':')")
        if self.sha256 is not None and (self.text is None or not re.fullmatch(r"[0-9a-f]{64}", self.sha256)):
            raise ValueError("sha256 pins a `text` file and must be 64 lowercase hex digits")
        if self.data_files is not None and not self.files():
            raise ValueError("data_files names no file")

    def files(self) -> tuple[str, ...]:
        if self.data_files is None:
            return ()
        return (self.data_files,) if isinstance(self.data_files, str) else self.data_files

    @property
    def run_label(self) -> str:
        if self.label is not None:
            return self.label
        if self.hub is not None:
            stem = self.hub.path.rstrip("/").rsplit("/", 1)[-1] + (f"-{self.hub.name}" if self.hub.name else "")
        else:
            stem = Path(self.text or self.files()[0]).stem  # wiki.valid.raw -> wiki.valid
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "text"


@dataclass(frozen=True)
class Calibration:
    dataset: str = "wikitext2:validation"  # never a test split
    samples: int = 64  # x seq_len tokens; AWQ used 128 x 512, the default suite 16 (CI time)
    seq_len: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dataset.endswith(":test") or ":" not in self.dataset:
            raise ValueError(f"calibration dataset must name a non-test split like "
                             f"'wikitext2:validation' or 'ptb:train', got '{self.dataset}'")
        if self.samples < 1 or self.seq_len < 2:
            raise ValueError("calibration samples must be >= 1 and seq_len >= 2")


@dataclass(frozen=True)
class VariantCfg:
    name: str
    method: Literal["rtn", "awq", "hqq", "onnx"]  # onnx: an existing quantized ONNX folder given by `path`
    path: str | None = None
    bits: Literal[4] = 4
    block_size: Literal[16, 32, 64, 128, 256] = 32
    accuracy_level: Literal[0, 1, 2, 3, 4] = 4
    lm_head: Literal["quantize", "exclude"] = "quantize"
    calibration: Calibration = field(default_factory=Calibration)
    symmetric: bool = True  # int4 grid: symmetric (scale only) or with a zero point per block (RTN, AWQ)
    embedding: Literal["quantize", "fp32"] = "quantize"  # the token embedding table: int4 or kept fp32

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise ValueError(f"variant name {self.name!r} may hold only letters, digits, '.', '_' and '-'")
        if self.name.lower() in ROLE_NAMES:
            raise ValueError(f"variant name {self.name!r} is a role name ({', '.join(ROLE_NAMES)}); "
                             "rename the variant, e.g. 'rtn-b32'")
        if (self.method == "onnx") != (self.path is not None):
            raise ValueError(f"variant '{self.name}': give `path` exactly when method = 'onnx'")
        if self.method == "hqq" and self.symmetric:
            raise ValueError(f"variant '{self.name}': HQQ quantizes with zero points; set symmetric = false")
        if self.method == "hqq" and self.embedding == "quantize":
            raise ValueError(f"variant '{self.name}': onnxruntime's HQQ cannot quantize the embedding "
                             "(no float zero points in GatherBlockQuantized); set embedding = 'fp32'")


@dataclass(frozen=True)
class Parity:
    """ORT base vs the torch reference on identical windows."""

    max_rel_dppl: float | None = 1e-4  # |PPL(ort) - PPL(torch)| / PPL(torch)
    max_abs_dlogit: float | None = 1e-2  # max |logit(ort) - logit(torch)| over sampled windows
    min_top1_agree: float | None = 0.99  # share of sampled positions whose argmax agrees
    sample_windows: int = 2  # windows per dataset compared logit by logit

    def __post_init__(self) -> None:
        if self.sample_windows < 1:
            raise ValueError(f"sample_windows must be at least 1, got {self.sample_windows}")


@dataclass(frozen=True)
class BaselineCfg:
    file: str | None = None  # results JSON in baselines/; relative to the suite file
    max_rel_regression: float = 0.01  # PPL may exceed the stored baseline by at most this fraction
    # Two-sided: when set, a PPL that moves by more than this fraction either way fails ("the baseline
    # no longer describes this model": a sudden improvement is as suspicious as a regression).
    max_rel_change: float | None = None
    # Accuracy tasks: each lane's acc may fall below the stored baseline's (same examples and prompts)
    # by at most this many points (a fraction). int4 kernels differ across CPUs: a near-tie can flip.
    max_acc_regression: float = 0.05

    def __post_init__(self) -> None:
        check_range("max_rel_regression", self.max_rel_regression, 0.0, None, "a non-negative fraction")
        check_range("max_acc_regression", self.max_acc_regression, 0.0, 1.0, "a fraction in [0, 1]")
        check_range("max_rel_change", self.max_rel_change, 0.0, None, "a fraction > 0", open_low=True)


@dataclass(frozen=True)
class Suite:
    model: ModelCfg = field(default_factory=ModelCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
    variants: tuple[VariantCfg, ...] = ()
    thresholds: Thresholds = field(default_factory=Thresholds)
    parity: Parity = field(default_factory=Parity)
    baseline: BaselineCfg = field(default_factory=BaselineCfg)
    datasets: tuple[DatasetCfg, ...] = ()  # [[datasets]]: scored after [eval] datasets
    tasks: tuple[TaskCfg, ...] = ()  # [[tasks]]: accuracy tasks (task_config.py)
    task_thresholds: TaskThresholds = field(default_factory=TaskThresholds)
    task_parity: TaskParity = field(default_factory=TaskParity)

    def __post_init__(self) -> None:
        labels = dataset_labels(self)
        if not labels and not self.tasks:
            raise ValueError("the suite needs at least one dataset ([eval] datasets or [[datasets]]) "
                             "or at least one task ([[tasks]], --task)")
        check_tasks(self.tasks, self.task_thresholds, [v.name for v in self.variants])
        clash = sorted({t.label for t in self.tasks} & set(labels))
        if clash:
            raise ValueError(f"'{clash[0]}' names both a dataset and a task; rename one (labels must be unique)")
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise ValueError(f"dataset label '{twice[0]}' is used twice; give each dataset its own label")
        check_custom_labels(self)
        names = [v.name for v in self.variants]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"variant names must be unique, '{dupes[0]}' repeats")
        unknown = sorted(set(self.thresholds.variants) - set(names))
        if unknown:
            raise ValueError(f"[thresholds.variants.{unknown[0]}] names no declared variant; "
                             f"declared: {', '.join(names) or 'none'}")
        for v in self.variants:
            for d in labels:
                if not self.thresholds.limits(v.name, d).any():
                    raise ValueError(f"no threshold for variant '{v.name}' on '{d}'; set "
                                     f"[thresholds] defaults or [thresholds.variants.{v.name}]")

    @property
    def roles(self) -> Roles:
        """Who plays which part (roles.py): the torch reference, the ORT base, the variants as candidates."""
        return Roles(candidates=tuple(v.name for v in self.variants))


def run_label(ref: str) -> str:
    """Dataset reference -> the label runs are stored under ('ptb', 'wikitext2:validation'); a dataset
    TOML given by path is labelled by its file name ('dir/mine.toml:validation' -> 'mine:validation')."""
    name, _, split = ref.partition(":")
    if is_path_ref(name):
        name = Path(name).name.removesuffix(".toml")
    return name if split in ("", "test") else f"{name}:{split}"


def is_path_ref(name: str) -> bool:
    """A dataset reference naming a TOML file (ends in .toml or has a path separator), not a name."""
    return name.endswith(".toml") or "/" in name or "\\" in name


def dataset_labels(suite: Suite) -> list[str]:
    """Every dataset's run label, in scoring order: [eval] datasets, then [[datasets]]."""
    return [run_label(d) for d in suite.eval.datasets] + [d.run_label for d in suite.datasets]


def custom_labels(suite: Suite) -> list[str]:
    """Labels of datasets not pinned by a packaged TOML: [[datasets]] / --text entries and TOMLs given by path."""
    return [run_label(d) for d in suite.eval.datasets if is_path_ref(d.partition(":")[0])] + \
        [d.run_label for d in suite.datasets]


def check_custom_labels(suite: Suite) -> None:
    """A packaged dataset's label means the packaged text: no other source may take its name (a file
    `wikitext2.toml` or `ptb.txt`, or `label = "ptb"`), or its numbers would pass for the packaged ones."""
    from evalsuite.data.corpora import known_datasets

    packaged = set(known_datasets())
    for label in custom_labels(suite):
        if label.partition(":")[0] in packaged:
            raise ValueError(f"dataset label '{label}' is the name of a packaged dataset, but it names other data "
                             "(a dataset TOML, text or data file of that name); rename the file or set another "
                             "label, or use the packaged dataset by its name")


def check_dataset_keys(suite: Suite, where: str) -> None:
    """Per-dataset threshold keys must name a configured dataset label: a misspelled or test-split key
    ('wikitxt2', 'wikitext2:test') would otherwise be ignored silently and the looser default apply."""
    labels = dataset_labels(suite)
    for variant, limits in suite.thresholds.variants.items():
        for key in limits.datasets:
            if key not in labels:
                raise ConfigError(f"{where}: [thresholds.variants.{variant}.datasets.{key}] names no configured "
                                  f"dataset; use one of: {', '.join(labels)}")


def load_suite(path: Path | None) -> Suite:
    path = path or DEFAULT_SUITE
    suite = tomlio.load(Suite, tomlio.read_toml(path), path.name)
    suite = anchor_paths(suite, path.resolve().parent)
    check_dataset_keys(suite, path.name)
    return suite


def anchor_paths(suite: Suite, folder: Path) -> Suite:
    """Dataset files named in a suite file are relative to its folder; a bare dataset name that is not
    a packaged dataset is looked up in `datasets_cfg/` beside the suite file."""
    from evalsuite.data.corpora import known_datasets

    packaged = set(known_datasets())
    refs = []
    for ref in suite.eval.datasets:
        name, sep, split = ref.partition(":")
        sibling = folder / "datasets_cfg" / f"{name}.toml"
        if is_path_ref(name):
            name = str(folder / Path(name).expanduser())
        elif name not in packaged and sibling.is_file():
            name = str(sibling)
        refs.append(name + sep + split)
    entries = tuple(replace(d, text=_anchor(folder, d.text),
                            data_files=tuple(str(folder / Path(f).expanduser()) for f in d.files()) or None)
                    for d in suite.datasets)
    model = replace(suite.model, source=model_path(folder, suite.model.source), onnx=_anchor(folder, suite.model.onnx))
    variants = tuple(replace(v, path=_anchor(folder, v.path)) for v in suite.variants)
    tasks = tuple(replace(t, name=str(folder / Path(t.name).expanduser())) if is_path_ref(t.name) else t
                  for t in suite.tasks)
    return replace(suite, model=model, variants=variants, eval=replace(suite.eval, datasets=tuple(refs)),
                   datasets=entries, tasks=tasks)


def model_path(folder: Path, source: str) -> str:
    """A model source that is a path (absolute, './', '~', a .gguf, or an existing folder below
    `folder`) anchored at `folder`; a named model or hub id (org/name) as it is."""
    from evalsuite.models.source import NAMED_MODELS

    path = Path(source).expanduser()
    if source in NAMED_MODELS or path.is_absolute():
        return str(path) if path.is_absolute() else source
    if source.startswith((".", "~")) or source.endswith(".gguf") or (folder / path).exists():
        return str(folder / path)
    return source


def _anchor(folder: Path, value: str | None) -> str | None:
    return None if value is None else str(folder / Path(value).expanduser())
