"""Evaluation text from sources beyond the packaged dataset TOMLs: a local UTF-8 text file, a dataset
TOML anywhere, local parquet/json/csv/text files through `datasets`' file builders, and Hugging Face
hub datasets through `datasets.load_dataset`. Every problem is a DataError (exit 2) raised before
any model work: a missing, empty or non-UTF-8 file, a split or a column that does not exist.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from evalsuite import tomlio
from evalsuite.cache import cache_root, file_sha256
from evalsuite.data.corpora import DatasetSpec, Text, spec_text
from evalsuite.errors import ConfigError, DataError

FORMATS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv", ".txt": "text", ".text": "text"}


def text_file(path: str, label: str, sha256: str | None = None) -> Text:
    """A local UTF-8 text file, scored as one stream (one document); its sha256 is recorded."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"text file {file} not found; check the path given to --text / text =")
    raw = file.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if sha256 is not None and digest != sha256:
        raise DataError(f"{file} has sha256 {digest[:12]}..., the suite pins {sha256[:12]}...; restore the file "
                        "or update sha256")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{file} is not UTF-8 (byte {err.start}: {raw[err.start:err.start + 1]!r}); "
                        "convert it, e.g. iconv -t UTF-8") from None
    if not text.strip():
        raise DataError(f"{file} is empty (no text to score); give a file with text")
    return Text(label, "test", text, hashlib.sha256(text.encode("utf-8")).hexdigest(), f"file:{file}",
                {"file_sha256": digest, "rows": 1}, label=label, rows=(text,))


def spec_file_text(ref: str, data_dir: Path | None, label: str) -> Text:
    """`path/to/mine.toml[:split]`: a dataset TOML in the packaged format. Its `file`s are relative to
    the TOML's folder (and sha256-checked when pinned); a split without a local file uses [hub]."""
    name, _, split = ref.partition(":")
    path = Path(name).expanduser()
    if not path.is_file():
        raise DataError(f"dataset config {path} not found; check the path given to --dataset")
    spec = tomlio.load(DatasetSpec, tomlio.read_toml(path), path.name)
    split = split or spec.default_split
    if split not in spec.splits:
        raise DataError(f"dataset '{spec.name}' ({path.name}) has no split '{split}'; choose one of "
                        f"{', '.join(spec.splits)}")
    if spec.default_split not in spec.splits:
        raise ConfigError(f"{path.name}: default_split '{spec.default_split}' is not in [splits]")
    local = path.resolve().parent if (path.resolve().parent / spec.splits[split].file).is_file() else data_dir
    if local is None and spec.hub is None:
        raise DataError(f"{path.name}: file {spec.splits[split].file} not found beside it and no [hub] source; "
                        "check the file name")
    text = spec_text(spec, split, local)
    return Text(text.dataset, text.split, text.text, text.sha256, text.source, text.meta, label=label, rows=text.rows)


def file_format(files: tuple[str, ...], given: str | None) -> str:
    if given is not None:
        return given
    kinds = {FORMATS.get(Path(f).suffix.lower()) for f in files}
    if len(kinds) != 1 or None in kinds:
        raise DataError(f"cannot tell the format of {', '.join(files)} from the extension; set format = "
                        "\"parquet\", \"json\", \"csv\" or \"text\"")
    return str(kinds.pop())


def data_files_text(files: tuple[str, ...], fmt: str | None, split: str, column: str, join: str, label: str) -> Text:
    """Local parquet/json/csv/text files through `datasets.load_dataset(<builder>, data_files=...)`
    (offline); the column's rows joined with `join`."""
    for f in files:
        if not Path(f).expanduser().is_file():
            raise DataError(f"data file {f} not found; check data_files")
    builder = file_format(files, fmt)
    paths = [str(Path(f).expanduser()) for f in files]
    ds = _load(builder, {"data_files": paths, "split": split, "cache_dir": str(cache_root() / "hf-datasets")},
               f"{builder} files {', '.join(Path(p).name for p in paths)}", "data_files")
    rows = _column(ds, column, ", ".join(Path(p).name for p in paths))
    meta = {"file_sha256": {Path(p).name: file_sha256(Path(p)) for p in paths}, "rows": len(rows)}
    return _joined(label, split, rows, join, f"files:{builder}:{','.join(paths)}", meta)


def hub_text(path: str, name: str | None, split: str, column: str, revision: str | None, data_dir: str | None,
             join: str, label: str) -> Text:
    """A Hugging Face dataset: `datasets.load_dataset(path, name, split=, revision=, data_dir=)[column]`."""
    kwargs = {"split": split, "revision": revision, "data_dir": data_dir}
    ds = _load(path, {"name": name, **kwargs}, f"{path} ({name or 'default'}, {split})", "hub")
    rows = _column(ds, column, path)
    source = f"hub:{path}/{name}/{split}" + (f"@{revision}" if revision else "")
    return _joined(label, split, rows, join, source, {"rows": len(rows), "revision": revision})


def _load(path: str, kwargs: dict[str, Any], what: str, key: str) -> Any:
    try:
        import datasets
    except ImportError:
        raise DataError("the 'datasets' package is missing; pip install datasets") from None
    datasets.utils.logging.disable_progress_bar()
    datasets.utils.logging.set_verbosity_error()
    try:
        return datasets.load_dataset(path, **kwargs)
    except ValueError as err:  # unknown split / config: the message names the choices
        raise DataError(f"cannot load {what}: {_first_line(err)}; fix {key}") from None
    except Exception as err:  # network, auth, missing dataset, unreadable file
        raise DataError(f"cannot load {what} ({type(err).__name__}: {_first_line(err)}); check {key}") from None


def _column(ds: Any, column: str, where: str) -> list[str]:
    if column not in ds.column_names:
        raise DataError(f"{where} has no column '{column}'; columns: {', '.join(ds.column_names)}; set column =")
    values = ds[column]
    rows = []
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise DataError(f"{where}: column '{column}' row {i} is {type(value).__name__}, not text; "
                            "choose a text column")
        rows.append(value)
    return rows


def _joined(label: str, split: str, rows: list[str], join: str, source: str, meta: dict[str, Any]) -> Text:
    text = join.join(rows)
    if not text.strip():
        raise DataError(f"dataset '{label}' ({source}) has no text; check the source and column")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Text(label, split, text, digest, source, meta, label=label, rows=tuple(rows))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
