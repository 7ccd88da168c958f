"""Datasets: typed configs in `datasets_cfg/`, evaluation text from a local data dir or the hub,
and a token-stream cache keyed by tokenizer identity + text hash + BOS policy.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from evalsuite import tomlio
from evalsuite.cache import cache_root, discard, file_sha256, fresh_wanted, key_of, read_npz, warn, write_npz
from evalsuite.errors import ConfigError, DataError

DATA_DIR_ENV = "EVALSUITE_DATA_DIR"
NAME = re.compile(r"[A-Za-z0-9_-]+")  # a dataset name is a name, never a path
RowRule = Literal["lines_blank_empty", "lines_stripped"]


@dataclass(frozen=True)
class HubSpec:
    path: str
    column: str
    config: str | None = None
    revision: str | None = None  # e.g. "refs/convert/parquet": the hub's parquet conversion
    data_dir: str | None = None  # the config's folder inside that revision


@dataclass(frozen=True)
class SplitSpec:
    hub_split: str
    file: str  # relative to the data dir
    sha256: str | None = None  # required for the packaged datasets (tests/test_data.py); optional in a user's TOML
    # sha256 of the evaluation text (rows joined): what a packaged label means, from the file or the
    # hub alike. The gate compares a results file's recorded text with it (gate/binding.py).
    text_sha256: str | None = None

    def __post_init__(self) -> None:
        path = Path(self.file)
        if path.is_absolute() or ".." in path.parts or self.file.startswith("~"):
            raise ValueError(f"file '{self.file}' must be a relative path inside the data dir (no '..')")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    rows: RowRule
    join: str
    splits: dict[str, SplitSpec]
    hub: HubSpec | None = None  # the packaged datasets have one; a user's TOML may be local-only
    default_split: str = "test"
    description: str = ""


@dataclass(frozen=True)
class Text:
    """One evaluation text and where it came from."""

    dataset: str
    split: str
    text: str
    sha256: str  # of text.encode("utf-8")
    source: str  # "file:<path>" or "hub:<path>/<config>/<split>"
    meta: dict[str, Any] = field(default_factory=dict)
    label: str = ""  # the run label (set by the pipeline); "" = dataset[:split]
    rows: tuple[str, ...] = ()  # the rows joined into `text`: the documents of per-document scoring


def config_dirs() -> list[Path]:
    here = Path(__file__).resolve().parent.parent  # the evalsuite package
    return [here / "datasets_cfg", here.parent / "datasets_cfg"]


def known_datasets() -> list[str]:
    names = {p.stem for d in config_dirs() if d.is_dir() for p in d.glob("*.toml")}
    return sorted(names)


def load_spec(name: str) -> DatasetSpec:
    if not NAME.fullmatch(name):
        raise DataError(f"dataset name {name!r} may hold only letters, digits, '_' and '-'; "
                        f"known datasets: {', '.join(known_datasets())}")
    for folder in config_dirs():
        path = folder / f"{name}.toml"
        if path.is_file():
            spec = tomlio.load(DatasetSpec, tomlio.read_toml(path), path.name)
            if spec.default_split not in spec.splits:
                raise ConfigError(f"{path.name}: default_split '{spec.default_split}' is not in [splits]")
            return spec
    raise DataError(f"unknown dataset '{name}'; known datasets: {', '.join(known_datasets())}")


def packaged_text_sha256(ref: str) -> str | None:
    """The pinned text sha256 of a packaged dataset reference ('ptb', 'wikitext2:validation'), or None."""
    spec, split = parse_ref(ref)
    return spec.splits[split].text_sha256


def parse_ref(ref: str) -> tuple[DatasetSpec, str]:
    """'wikitext2' or 'wikitext2:validation' -> (spec, split)."""
    name, _, split = ref.partition(":")
    spec = load_spec(name)
    split = split or spec.default_split
    if split not in spec.splits:
        raise DataError(f"dataset '{name}' has no split '{split}'; choose one of {', '.join(spec.splits)}")
    return spec, split


def resolve_data_dir(cli_value: str | None) -> Path | None:
    """--data-dir, else $EVALSUITE_DATA_DIR, else None (use the hub)."""
    raw = cli_value or os.environ.get(DATA_DIR_ENV)
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_dir():
        origin = "--data-dir" if cli_value else f"${DATA_DIR_ENV}"
        raise DataError(f"data dir {path} (from {origin}) does not exist; point it at a folder with "
                        "wikitext-2-raw/ and ptb/ (e.g. ../shared/data)")
    return path


def rows_from_lines(lines: list[str], rule: RowRule) -> list[str]:
    if rule == "lines_blank_empty":
        return [line if line.strip() else "" for line in lines]
    return [line.strip() for line in lines]


def load_text(ref: str, data_dir: Path | None) -> Text:
    spec, split = parse_ref(ref)
    return spec_text(spec, split, data_dir)


def spec_text(spec: DatasetSpec, split: str, data_dir: Path | None) -> Text:
    """The split's rows from `data_dir` (sha256-checked) or, without one, from the hub, joined."""
    sp = spec.splits[split]
    if data_dir is not None:
        rows, source = _local_rows(spec, sp, data_dir), f"file:{data_dir / sp.file}"
    elif spec.hub is not None:
        rows, source = _hub_rows(spec, sp), f"hub:{spec.hub.path}/{spec.hub.config}/{sp.hub_split}"
    else:
        raise DataError(f"dataset '{spec.name}' has no [hub] source; pass --data-dir or set {DATA_DIR_ENV}")
    text = spec.join.join(rows)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if sp.text_sha256 is not None and digest != sp.text_sha256:
        raise DataError(f"dataset '{spec.name}' ({split}) from {source} has text sha256 {digest[:12]}..., "
                        f"{spec.name}.toml pins {sp.text_sha256[:12]}...; restore the canonical data")
    return Text(spec.name, split, text, digest, source, {"file_sha256": sp.sha256, "rows": len(rows)},
                rows=tuple(rows))


def _local_rows(spec: DatasetSpec, sp: SplitSpec, data_dir: Path) -> list[str]:
    path = data_dir / sp.file
    if not path.is_file():
        raise DataError(f"missing data file {path} for dataset '{spec.name}'; the data dir must hold {sp.file}")
    if data_dir.resolve() not in path.resolve().parents:  # a symlink out of the folder is never followed
        raise DataError(f"data file {path} of dataset '{spec.name}' resolves to {path.resolve()}, outside "
                        f"{data_dir}; copy the file into the folder instead of linking it")
    actual = file_sha256(path)
    if sp.sha256 is not None and actual != sp.sha256:
        raise DataError(f"{path} has sha256 {actual[:12]}..., expected {sp.sha256[:12]}... from "
                        f"{spec.name}.toml; restore the canonical file")
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            return rows_from_lines(fh.readlines(), spec.rows)
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 (byte {err.start}); convert it, e.g. iconv -t UTF-8") from None


def _hub_rows(spec: DatasetSpec, sp: SplitSpec) -> list[str]:
    hub = spec.hub
    assert hub is not None
    try:
        import datasets
    except ImportError:
        raise DataError("no data dir given and the 'datasets' package is missing; "
                        f"pass --data-dir or set {DATA_DIR_ENV}") from None
    try:
        ds = datasets.load_dataset(hub.path, hub.config, split=sp.hub_split, revision=hub.revision,
                                   data_dir=hub.data_dir)
    except Exception as err:  # network, auth, missing dataset: all mean "use a local copy"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"cannot load {hub.path} from the hub ({first}); "
                        f"pass --data-dir or set {DATA_DIR_ENV} to a local copy") from None
    if hub.column not in ds.column_names:
        raise DataError(f"{hub.path} has no column '{hub.column}'; columns: {', '.join(ds.column_names)}")
    return [str(r) for r in ds[hub.column]]


def tokenize(text: Text, tokenizer: Any, tokenizer_id: str, bos: bool) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (int64 [n]) of the whole text, BOS first when `bos`, and each token's end offset in
    characters of the text (int64 [n]; 0 for BOS). Cached on disk."""
    key = key_of({"tokenizer": tokenizer_id, "text": text.sha256, "bos": bos, "v": 3})
    path = cache_root() / "tokens" / f"{key}.npz"
    if path.exists() and not fresh_wanted(path):
        cached = read_npz(path)
        if cached is not None and {"ids", "ends"} <= set(cached):
            with contextlib.suppress(OSError):
                os.utime(path)  # last use, for `evalsuite cache ls/clear`
            return cached["ids"].astype(np.int64), cached["ends"].astype(np.int64)
        warn(f"cache entry {path} is unreadable or fails its sha256; moved aside and rebuilt")
    if path.exists():
        discard(path)
    enc = tokenizer(text.text, add_special_tokens=False, verbose=False, return_offsets_mapping=True)
    ids, ends = list(enc["input_ids"]), [end for _, end in enc["offset_mapping"]]
    if bos:
        if tokenizer.bos_token_id is None:
            raise ConfigError("bos = true but the tokenizer has no BOS token; set bos = false")
        ids, ends = [tokenizer.bos_token_id, *ids], [0, *ends]
    id_arr, end_arr = np.asarray(ids, dtype=np.int32), np.asarray(ends, dtype=np.int64)
    write_npz(path, {"ids": id_arr, "ends": end_arr})
    return id_arr.astype(np.int64), end_arr


def span_counts(text: str, ends: np.ndarray, first_target: int, n_tokens: int) -> tuple[int, int]:
    """(words, UTF-8 bytes) of the text the scored targets cover: from the end of the last
    context-only token to the end of target n_tokens-1. Words and bytes as lm-evaluation-harness
    counts them over a document: `len(re.split(r"\\s+", span))` (leading or trailing whitespace adds
    an empty "word", as there) and `len(span.encode("utf-8"))`."""
    span = text[int(ends[first_target - 1]) : int(ends[n_tokens - 1])]
    return lm_eval_words(span), len(span.encode("utf-8"))


def lm_eval_words(text: str) -> int:
    """lm-evaluation-harness's word count of a document (`perplexity` tasks' word_perplexity)."""
    return len(re.split(r"\s+", text))
