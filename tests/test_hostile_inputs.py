"""Hostile inputs (issue 23): every file read back, every path in a suite, every kill, every write.

Test names name the principle: p3 every file read back is hostile (one line, exit 2; a cache entry
is moved aside with one warning and rebuilt), p4 validate refuses everything eval would refuse,
p5 a suite's paths resolve against the suite file, p6 no process or scratch file outlives a run,
p7 every write is complete or absent. The p3 fuzz tests call the readers in-process (hypothesis);
each reader also has a subprocess test for the exit code.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalsuite.errors import EvalsuiteError

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "baselines" / "smollm2-135m-instruct.json"
# derandomize: CI runs the same 150 examples every time (a new random failure is found by running with
# HYPOTHESIS_RANDOM=1, not by chance in CI)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                derandomize=not os.environ.get("HYPOTHESIS_RANDOM"))
THRESHOLD = "[thresholds]\nmax_kld_mean = 1.0\n"


def cli(args: list[str], tmp: Path, cwd: Path | None = None, env: dict[str, str] | None = None,
        preexec: Any = None) -> subprocess.CompletedProcess[str]:
    base = {**os.environ, "EVALSUITE_CACHE": str(tmp / "cache"), "PYTHONPATH": str(REPO),
            "EVALSUITE_DATA_DIR": os.environ.get("EVALSUITE_DATA_DIR", str(REPO.parent / "shared" / "data"))}
    base.pop("GITHUB_STEP_SUMMARY", None)
    return subprocess.run([sys.executable, "-m", "evalsuite", *args], cwd=cwd or tmp, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=600, preexec_fn=preexec)


def assert_one_line_exit_2(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err[-2000:])
    assert "Traceback" not in err and "internal error" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("evalsuite: error: "), err
    for word in words:
        assert word in last, last


def hf_copy(tiny_llama_dir: Path, dest: Path, config: bytes | None = None) -> Path:
    shutil.copytree(tiny_llama_dir, dest)
    if config is not None:
        (dest / "config.json").write_bytes(config)
    return dest


# --- P3: every file read back is hostile ---------------------------------------------------------

CONFIGS = {"invalid": b"{\"model_type\": ", "not_utf8": b"{\"model_type\": \"\xff\xfe\"}", "list": b"[1, 2]",
           "deep": b"[" * 100_000 + b"]" * 100_000, "nan": b"{\"max_position_embeddings\": NaN}"}


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_p3_config_json_malformed(kind: str, tiny_llama_dir: Path, tmp_path: Path) -> None:
    model = hf_copy(tiny_llama_dir, tmp_path / "m", CONFIGS[kind])
    proc = cli(["validate", "--model", str(model), "--runner", "torch", "--dataset", "ptb"], tmp_path)
    assert_one_line_exit_2(proc, "config.json")


def test_p3_config_json_not_utf8(tiny_llama_dir: Path, tmp_path: Path) -> None:
    model = hf_copy(tiny_llama_dir, tmp_path / "m", CONFIGS["not_utf8"])
    assert_one_line_exit_2(cli(["validate", "--model", str(model), "--runner", "torch"], tmp_path), "not UTF-8")


def results_variant(edit: str) -> bytes:
    text = BASELINE.read_text()
    doc = json.loads(text)
    if edit == "nan":
        return text.replace('"ppl": ', '"ppl": NaN, "x": ', 1).encode()
    if edit == "huge_int":
        return text.replace('"window": 512', '"window": ' + "9" * 5000, 1).encode()
    if edit == "deep":
        return text[:-2].encode() + b', "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}\n"
    if edit == "list_top":
        return json.dumps([doc]).encode()
    if edit == "not_utf8":
        return text.replace('"base"', '"b\xe9"', 1).encode("latin-1")
    if edit == "policy_list":
        doc["policy"] = [1, 2]
    elif edit == "variants_str":
        doc["variants"] = {"rtn-b32-acc4": "x"}
    elif edit == "runs_null_field":
        doc["runs"][0]["reused_tokens"] = None
    return json.dumps(doc).encode()


@pytest.mark.parametrize("edit", ["nan", "huge_int", "deep", "list_top", "not_utf8", "policy_list", "variants_str",
                                  "runs_null_field"])
def test_p3_results_file_malformed(edit: str, tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(results_variant(edit))
    proc = cli(["gate", "--results", str(path), "--no-baseline"], tmp_path)
    assert_one_line_exit_2(proc, "r.json")
    proc = cli(["merge", str(path), "--json-out", str(tmp_path / "m.json")], tmp_path)
    assert_one_line_exit_2(proc, "shard file")


def test_p3_results_file_with_bom_is_read(tmp_path: Path) -> None:
    from evalsuite.gate import results

    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + BASELINE.read_bytes())
    assert results.read(path, "baseline")["runs"]


def test_p3_baseline_without_runs(tmp_path: Path) -> None:
    doc = json.loads(BASELINE.read_text())
    doc["runs"] = []
    (tmp_path / "b.json").write_text(json.dumps(doc))
    proc = cli(["gate", "--results", str(BASELINE), "--baseline", str(tmp_path / "b.json")], tmp_path)
    assert_one_line_exit_2(proc, "no runs")


SUITES = {"not_utf8": b"[eval]\nwindow = 64 # \xff\n", "huge_int": b"[eval]\nthreads = 99999999999999999999999\n",
          "deep": b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n", "inf": b"[thresholds]\nmax_kld_mean = inf\n",
          "list_table": b"eval = [1, 2]\n", "folder": b""}


@pytest.mark.parametrize("kind", list(SUITES))
def test_p3_suite_toml_malformed(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "suite.toml"
    if kind == "folder":
        path.mkdir()
    else:
        path.write_bytes(SUITES[kind])
    assert_one_line_exit_2(cli(["validate", "--config", str(path), "--no-baseline"], tmp_path), "suite.toml")


DATASET_TOMLS = {"wrong_type": 'name = "mine"\nrows = 3\njoin = " "\n'
                               '[splits.test]\nhub_split = "test"\nfile = "t.txt"\n',
                 "splits_list": 'name = "mine"\nrows = "lines_stripped"\njoin = " "\nsplits = [1]\n',
                 "not_utf8_data": 'name = "mine"\nrows = "lines_stripped"\njoin = " "\n'
                                  '[splits.test]\nhub_split = "test"\nfile = "t.txt"\n'}


@pytest.mark.parametrize("kind", list(DATASET_TOMLS))
def test_p3_dataset_toml_malformed(kind: str, tiny_llama_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(DATASET_TOMLS[kind])
    (tmp_path / "t.txt").write_bytes(b"caf\xe9 au lait\n" if kind == "not_utf8_data" else b"some text\n")
    proc = cli(["validate", "--model", str(tiny_llama_dir), "--runner", "torch", "--dataset",
                str(tmp_path / "mine.toml")], tmp_path)
    assert_one_line_exit_2(proc)


def test_p3_dataset_file_symlinked_out_of_its_folder(tiny_llama_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "mine.toml").write_text('name = "mine"\nrows = "lines_stripped"\njoin = " "\n'
                                      '[splits.test]\nhub_split = "test"\nfile = "link.txt"\n')
    (folder / "link.txt").symlink_to(data_dir / "ptb" / "ptb.test.txt")
    proc = cli(["validate", "--model", str(tiny_llama_dir), "--runner", "torch", "--dataset",
                str(folder / "mine.toml")], tmp_path)
    assert_one_line_exit_2(proc, "outside")


@pytest.mark.parametrize("content", [b"{", b"[]", b"{\"model\": {\"context_length\": 1e999}}", b"\xff"])
def test_p3_genai_config_malformed(content: bytes, tiny_llama_dir: Path, tmp_path: Path) -> None:
    onnx = tmp_path / "onnx"
    onnx.mkdir()
    (onnx / "model.onnx").write_bytes(b"x")
    (onnx / "genai_config.json").write_bytes(content)
    (tmp_path / "suite.toml").write_text(f'[model]\nsource = "{tiny_llama_dir}"\nonnx = "onnx"\n'
                                         '[eval]\nrunners = ["ort"]\ndatasets = ["ptb"]\n')
    assert_one_line_exit_2(cli(["validate", "--config", str(tmp_path / "suite.toml")], tmp_path),
                           "genai_config.json")


def test_p3_document_token_cache_heals(tiny_llama_dir: Path, tmp_path: Path) -> None:
    args = ["eval", "--model", str(tiny_llama_dir), "--runner", "torch", "--dataset", "ptb", "--per-document",
            "--max-tokens", "200", "--window", "64", "--stride", "64", "--threads", "1", "--json-out"]
    first = cli([*args, str(tmp_path / "clean.json")], tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (npz,) = (tmp_path / "cache" / "tokens").glob("docs-*.npz")
    nll = json.loads((tmp_path / "clean.json").read_text())["runs"][0]["nll_sum"]
    for damage, extra in (("flip", []), ("truncate", ["--fresh"]), ("empty", [])):
        data = bytearray(npz.read_bytes())
        if damage == "flip":
            data[len(data) // 2] ^= 0x40
        npz.write_bytes(bytes(data[: len(data) // 2] if damage == "truncate" else b"" if damage == "empty" else data))
        shutil.rmtree(tmp_path / "cache" / "journal", ignore_errors=True)  # score again from the token stream itself
        proc = cli([*args, str(tmp_path / f"{damage}.json"), *extra], tmp_path)
        assert proc.returncode == 0, (damage, proc.stderr[-2000:])
        assert proc.stderr.count("moved aside and rebuilt") == (0 if extra else 1), proc.stderr
        assert json.loads((tmp_path / f"{damage}.json").read_text())["runs"][0]["nll_sum"] == nll


# In-process fuzzing: each reader either returns or raises the project's error with one line.

def _one_line(call: Any) -> Any:
    try:
        return call()
    except EvalsuiteError as err:
        assert "\n" not in str(err) and str(err), repr(str(err))
        return None


_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                  st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=4))
_json = st.recursive(_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                     max_leaves=6)


def _paths(doc: Any, pre: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [pre]
    items = doc.items() if isinstance(doc, dict) else enumerate(doc[:2]) if isinstance(doc, list) else []
    for key, value in items:
        out += _paths(value, (*pre, key))
    return out


_BASE_DOC = json.loads(BASELINE.read_text())
_EDIT_PATHS = _paths(_BASE_DOC)[1:]


@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(_EDIT_PATHS), _json), min_size=1, max_size=3),
       raw=st.binary(max_size=64), splice=st.booleans())
def test_p3_fuzz_results_reader_and_gate(edits: list[tuple[tuple[Any, ...], Any]], raw: bytes, splice: bool,
                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    """A results/baseline/shard file edited anywhere (a list where an object belongs, huge ints,
    nulls), or with random bytes spliced in: read() gives one line, or the gate and reports run."""
    from evalsuite.config import load_suite
    from evalsuite.gate import results
    from evalsuite.gate.checks import baseline_checks
    from evalsuite.gate.verdict import compare
    from evalsuite.report import ci, junit

    doc = json.loads(json.dumps(_BASE_DOC))
    for path, value in edits:
        cur = doc
        for key in path[:-1]:
            cur = cur[key] if isinstance(cur, (dict, list)) and (key in cur if isinstance(cur, dict)
                                                                  else key < len(cur)) else None
        if isinstance(cur, dict) or (isinstance(cur, list) and path[-1] < len(cur)):
            cur[path[-1]] = value
    blob = json.dumps(doc).encode()
    if splice:
        blob = blob[: len(blob) // 2] + raw + blob[len(blob) // 2 :]
    file = tmp_path_factory.mktemp("fuzz") / "r.json"
    file.write_bytes(blob)
    for what in ("results", "baseline"):
        read = _one_line(lambda w=what: results.read(file, w))
        if read is None:
            continue
        suite, stored = load_suite(None), results.read(BASELINE, "baseline")
        checks = compare(read, suite)
        baseline_checks(read, stored, suite.baseline, "b") if what == "results" else baseline_checks(
            stored, read, suite.baseline, "b")
        ci.markdown({**read, "checks": [c.to_json() for c in checks]}, checks)
        junit.junit(checks, read)


def _toml_value(draw: Any, depth: int = 0) -> str:
    kind = draw(st.sampled_from(["int", "bigint", "float", "special", "str", "bool", "array", "table"][
        : 6 if depth > 1 else 8]))
    if kind == "int":
        return str(draw(st.integers(-5, 10**6)))
    if kind == "bigint":
        return str(draw(st.integers(2**62, 2**80)))
    if kind == "float":
        return repr(draw(st.floats(allow_nan=False, allow_infinity=False)))
    if kind == "special":
        return draw(st.sampled_from(["inf", "-inf", "nan"]))
    if kind == "str":
        return json.dumps(draw(st.sampled_from(["base", "rtn", "awq", "onnx", "ptb", "wikitext2:validation",
                                                "x/y", "../z", "", "fp16", "quantize"])))
    if kind == "bool":
        return draw(st.sampled_from(["true", "false"]))
    items = [_toml_value(draw, depth + 1) for _ in range(draw(st.integers(0, 2)))]
    if kind == "array":
        return "[" + ", ".join(items) + "]"
    keys = draw(st.lists(st.sampled_from(["name", "method", "dataset", "seq_len", "file"]), max_size=2, unique=True))
    return "{" + ", ".join(f"{k} = {v}" for k, v in zip(keys, items, strict=False)) + "}"


SUITE_KEYS = {"model": ["source", "onnx", "base_precision", "trust_remote_code"],
              "eval": ["datasets", "window", "stride", "max_tokens", "threads", "batch_size", "runners", "bos"],
              "parity": ["sample_windows", "max_rel_dppl"], "baseline": ["file", "max_rel_regression"],
              "thresholds": ["max_kld_mean", "max_rel_dppl", "interval", "variants"],
              "[variants]": ["name", "method", "path", "block_size", "calibration", "symmetric"],
              "[datasets]": ["text", "data_files", "hub", "label", "sha256"]}


@st.composite
def suite_tomls(draw: Any) -> bytes:
    lines = []
    for table in draw(st.lists(st.sampled_from(list(SUITE_KEYS)), min_size=1, max_size=4)):
        lines.append(f"[{table}]")
        for key in draw(st.lists(st.sampled_from(SUITE_KEYS[table]), max_size=4, unique=True)):
            lines.append(f"{key} = {_toml_value(draw)}")
    text = "\n".join(lines).encode() + b"\n"
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.binary(max_size=8)) + text[cut:]
    return text


@FUZZ
@given(blob=suite_tomls())
def test_p3_fuzz_suite_toml_reader(blob: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    from evalsuite.config import load_suite

    path = tmp_path_factory.mktemp("fuzz") / "suite.toml"
    path.write_bytes(blob)
    _one_line(lambda: load_suite(path))


@FUZZ
@given(blob=suite_tomls(), split=st.sampled_from(["", ":test", ":x"]))
def test_p3_fuzz_dataset_toml_reader(blob: bytes, split: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    from evalsuite.data import sources

    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "t.txt").write_text("a b c\n")
    text = blob.replace(b"[eval]", b"[splits.test]").replace(b"[model]", b"[hub]")
    (folder / "mine.toml").write_bytes(b'name = "mine"\nrows = "lines_stripped"\njoin = " "\n' + text)
    _one_line(lambda: sources.spec_file_text(str(folder / "mine.toml") + split, None, "mine"))


@FUZZ
@given(doc=_json, raw=st.binary(max_size=32), mode=st.sampled_from(["json", "raw", "splice"]))
def test_p3_fuzz_model_config_readers(doc: Any, raw: bytes, mode: str,
                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    """config.json and genai_config.json: every reader of them (positions, AWQ support, the builder's
    normalised copy, the GenAI decoder file) gives one line or a value."""
    from evalsuite.models import hf_config, onnx_files, positions
    from evalsuite.quant.support import model_type

    folder = tmp_path_factory.mktemp("fuzz")
    good = json.dumps({"model_type": "llama", "max_position_embeddings": doc, "model": {"decoder": doc}}).encode()
    blob = json.dumps(doc).encode() if mode == "json" else raw if mode == "raw" else good[:20] + raw + good[20:]
    for name in ("config.json", "genai_config.json"):
        (folder / name).write_bytes(blob)
    (folder / "model.onnx").write_bytes(b"x")
    _one_line(lambda: positions.limits(folder, str(folder)))
    _one_line(lambda: model_type(folder))
    _one_line(lambda: hf_config.config_changes(folder))
    _one_line(lambda: onnx_files.resolve_onnx(folder))


@FUZZ
@given(cut=st.integers(0, 4096), flips=st.lists(st.tuples(st.integers(0, 4095), st.integers(1, 255)), max_size=4),
       extra=st.binary(max_size=16))
def test_p3_fuzz_gguf_header_reader(cut: int, flips: list[tuple[int, int]], extra: bytes,
                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    from evalsuite.models import positions
    from evalsuite.models.source import _smollm2_gguf

    head = bytearray(_gguf_head(_smollm2_gguf()))
    for at, bits in flips:
        head[at % len(head)] ^= bits
    path = tmp_path_factory.mktemp("fuzz") / "m.gguf"
    path.write_bytes(bytes(head[: cut * 64]) + extra)
    length = _one_line(lambda: positions.gguf_context_length(path))
    assert length is None or isinstance(length, int)


_GGUF: dict[Path, bytes] = {}


def _gguf_head(path: Path) -> bytes:
    if path not in _GGUF:
        with open(path, "rb") as fh:
            _GGUF[path] = fh.read(1 << 18)
    return _GGUF[path]


def test_p3_gguf_context_length_of_the_default_model() -> None:
    from evalsuite.models import positions
    from evalsuite.models.source import _smollm2_gguf

    assert positions.gguf_context_length(_smollm2_gguf()) == 8192


@FUZZ
@given(cut=st.integers(0, 100), flip=st.integers(0, 10**6), empty=st.booleans())
def test_p3_fuzz_token_cache_reader(cut: int, flip: int, empty: bool, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A damaged token cache entry is never used: read_npz returns the arrays or None, never raises."""
    import numpy as np

    from evalsuite.cache import read_npz, write_npz

    path = tmp_path_factory.mktemp("fuzz") / "docs-x.npz"
    arrays = {"ids": np.arange(50), "ends": np.arange(50), "docs": np.zeros((2, 3), np.int64)}
    write_npz(path, arrays)
    data = bytearray(path.read_bytes())
    data[flip % len(data)] ^= 0x10
    path.write_bytes(b"" if empty else bytes(data[: len(data) * cut // 100]) if cut < 100 else bytes(data))
    got = read_npz(path)
    assert got is None or all(np.array_equal(got[k], v) for k, v in arrays.items())


# --- P4: validate refuses everything eval would refuse ------------------------------------------

@pytest.mark.parametrize("name", ["base", "torch", "ORT", "reference"])
def test_p4_variant_named_after_a_role(name: str, tiny_llama_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "suite.toml").write_text(f'[[variants]]\nname = "{name}"\nmethod = "rtn"\n{THRESHOLD}')
    proc = cli(["validate", "--config", str(tmp_path / "suite.toml"), "--model", str(tiny_llama_dir)], tmp_path)
    assert_one_line_exit_2(proc, "role name")


def test_p4_calibration_seq_len_beyond_positions(tiny_llama_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "suite.toml").write_text('[eval]\ndatasets = ["ptb"]\n[[variants]]\nname = "awq"\nmethod = "awq"\n'
                                         '[variants.calibration]\ndataset = "wikitext2:validation"\n'
                                         f'seq_len = 100000000\n{THRESHOLD}')
    proc = cli(["validate", "--config", str(tmp_path / "suite.toml"), "--model", str(tiny_llama_dir)], tmp_path)
    assert_one_line_exit_2(proc, "calibration seq_len 100000000", "512 positions")


def test_p4_window_beyond_gguf_positions(tmp_path: Path) -> None:
    proc = cli(["validate", "--window", "9000", "--no-baseline"], tmp_path)  # the default GGUF: 8192 positions
    assert_one_line_exit_2(proc, "window 9000", "8192 positions", "context_length")


def test_p4_calibration_on_an_evaluated_split(tiny_llama_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "suite.toml").write_text('[eval]\ndatasets = ["wikitext2:validation"]\n[[variants]]\nname = "awq"\n'
                                         f'method = "awq"\n{THRESHOLD}')
    proc = cli(["validate", "--config", str(tmp_path / "suite.toml"), "--model", str(tiny_llama_dir)], tmp_path)
    assert_one_line_exit_2(proc, "calibration dataset wikitext2:validation is also evaluated")
    ok = cli(["validate", "--config", str(tmp_path / "suite.toml"), "--model", str(tiny_llama_dir),
              "--dataset", "ptb"], tmp_path)
    assert ok.returncode == 0, ok.stderr


# --- P5: every path in a suite resolves against the suite file -----------------------------------

def test_p5_suite_paths_resolve_against_the_suite_file(tiny_llama_dir: Path, tmp_path: Path) -> None:
    suite_dir, elsewhere = tmp_path / "suite", tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copytree(tiny_llama_dir, suite_dir / "model")
    for name in ("base-onnx", "int4"):
        (suite_dir / name).mkdir()
        (suite_dir / name / "model.onnx").write_bytes(b"x")
    (suite_dir / "texts").mkdir()
    (suite_dir / "texts" / "t.txt").write_text("some text to score " * 20)
    shutil.copy(BASELINE, suite_dir / "b.json")
    (suite_dir / "datasets_cfg").mkdir()
    (suite_dir / "datasets_cfg" / "mine.toml").write_text('name = "mine"\nrows = "lines_stripped"\njoin = " "\n'
                                                          '[splits.test]\nhub_split = "test"\nfile = "m.txt"\n')
    (suite_dir / "datasets_cfg" / "m.txt").write_text("mine mine mine\n")
    (suite_dir / "suite.toml").write_text(
        '[model]\nsource = "model"\nonnx = "base-onnx"\n[eval]\ndatasets = ["datasets_cfg/mine.toml", "mine"]\n'
        'runners = ["ort"]\n[[datasets]]\ntext = "texts/t.txt"\n[[variants]]\nname = "given"\nmethod = "onnx"\n'
        f'path = "int4"\n[baseline]\nfile = "b.json"\n{THRESHOLD}')
    proc = cli(["validate", "--config", str(suite_dir / "suite.toml")], tmp_path, cwd=elsewhere)
    assert proc.returncode == 2 and "twice" in proc.stderr  # both refs name the same file: one label
    text = (suite_dir / "suite.toml").read_text().replace(', "mine"]', "]")
    (suite_dir / "suite.toml").write_text(text)
    proc = cli(["validate", "--config", str(suite_dir / "suite.toml")], tmp_path, cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    for path in ("model", "base-onnx", "int4", "texts/t.txt", "b.json", "datasets_cfg/m.txt"):
        assert str(suite_dir / path) in proc.stdout, (path, proc.stdout)


# --- P6: no process or scratch file outlives a run -----------------------------------------------

@pytest.mark.parametrize("kill", ["group", "process"])
def test_p6_sigkill_during_build_leaves_no_builder(kill: str, tiny_llama_dir: Path, tmp_path: Path) -> None:
    """`kill -9 -PGID` (a CI runner's hard cancel) or `kill -9 PID` of the gate mid-build: the builder
    dies with it; its scratch folder is swept by the next build."""
    import psutil

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    (tmp_path / "suite.toml").write_text('[eval]\nrunners = ["ort"]\n')
    env = {**os.environ, "EVALSUITE_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO), "TMPDIR": str(scratch)}
    proc = subprocess.Popen([sys.executable, "-m", "evalsuite", "eval", "--config", str(tmp_path / "suite.toml"),
                             "--dataset", "ptb", "--max-tokens", "300", "--model", str(tiny_llama_dir)],
                            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    children: list[psutil.Process] = []
    deadline = time.monotonic() + 300
    while not children and proc.poll() is None and time.monotonic() < deadline:
        children = [c for c in psutil.Process(proc.pid).children(recursive=True)
                    if "onnxruntime_genai" in " ".join(c.cmdline())]
        time.sleep(0.05)
    assert children, "the builder never started"
    if kill == "group":
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.kill()
    proc.wait(timeout=60)
    _, alive = psutil.wait_procs(children, timeout=30)
    assert alive == [], [c.cmdline() for c in alive]
    left = list(scratch.glob("evalsuite-builder-*"))
    assert left  # SIGKILL runs no cleanup ...
    from evalsuite.models.onnx_build import sweep_scratch

    before = tempfile.tempdir
    tempfile.tempdir = str(scratch)
    try:
        sweep_scratch()  # ... the next build's start removes it (its pid is gone)
    finally:
        tempfile.tempdir = before
    assert not list(scratch.glob("evalsuite-builder-*"))


# --- P7: every write is complete or absent --------------------------------------------------------

def test_p7_step_summary_on_a_full_disk(tmp_path: Path) -> None:
    outs = [tmp_path / "r.json", tmp_path / "j.xml"]
    proc = cli(["gate", "--results", str(BASELINE), "--json-out", str(outs[0]), "--junit", str(outs[1])], tmp_path,
               env={"GITHUB_STEP_SUMMARY": "/dev/full"})
    assert_one_line_exit_2(proc, "$GITHUB_STEP_SUMMARY")
    assert not [p for p in outs if p.exists()]  # no output of a failed run looks complete


def _fsize_limit(limit: int) -> Any:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_p7_step_summary_over_the_file_size_limit(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n" * 30)
    before = summary.read_bytes()
    proc = cli(["gate", "--results", str(BASELINE)], tmp_path, env={"GITHUB_STEP_SUMMARY": str(summary)},
               preexec=_fsize_limit(len(before) + 100))
    assert_one_line_exit_2(proc, "$GITHUB_STEP_SUMMARY")
    assert summary.read_bytes() == before  # cut back: no half summary


@pytest.mark.parametrize("flag", ["--json-out", "--junit", "--markdown"])
def test_p7_output_over_the_file_size_limit(flag: str, tmp_path: Path) -> None:
    out = tmp_path / "out" / "file"
    out.parent.mkdir()
    proc = cli(["gate", "--results", str(BASELINE), flag, str(out)], tmp_path, preexec=_fsize_limit(200))
    assert_one_line_exit_2(proc, "cannot write")
    assert not list(out.parent.iterdir())  # neither the file nor a temp file beside it
