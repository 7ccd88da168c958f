"""Strict TOML config loading: unknown keys, wrong types and bad values are errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evalsuite.config import DEFAULT_SUITE, Suite, load_suite
from evalsuite.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return path


def test_default_suite_loads() -> None:
    suite = load_suite(DEFAULT_SUITE)
    assert suite.eval.datasets == ("wikitext2", "ptb")
    assert suite.eval.stride <= suite.eval.window


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param("[eval]\nwindw = 5\n", r"unknown key 'windw'; did you mean 'window'\?", id="typo"),
        pytest.param("[evl]\n", "unknown key 'evl'", id="unknown-table"),
        pytest.param("[eval]\nwindow = '512'\n", "expected an integer", id="wrong-type"),
        pytest.param("[eval]\nwindow = 5.0\n", "expected an integer", id="float-for-int"),
        pytest.param("[eval]\nbos = 1\n", "expected true or false", id="int-for-bool"),
        pytest.param("[eval]\nruners = ['torch']\n", "unknown key", id="typo-list"),
        pytest.param("[eval]\nrunners = ['tensorflow']\n", "must be one of", id="bad-literal"),
        pytest.param("[eval]\ndatasets = []\n", "at least one dataset", id="no-datasets"),
        pytest.param("[eval]\nmax_tokens = 1\n", "at least 2", id="max-tokens"),
        pytest.param("[eval\n", "malformed TOML", id="malformed"),
        pytest.param("[[variants]]\nmethod = 'rtn'\n", "missing required key 'name'", id="variant-no-name"),
        pytest.param("[[variants]]\nname='a'\nmethod='rtn'\nblock_size=48\n", "must be one of", id="block"),
        pytest.param(
            "[[variants]]\nname='a'\nmethod='awq'\n[variants.calibration]\ndataset='wikitext2:test'\n",
            "non-test split", id="calib-on-test",
        ),
        pytest.param("[[variants]]\nname='a'\nmethod='rtn'\n[[variants]]\nname='a'\nmethod='awq'\n",
                     "unique", id="dup-variant"),
    ],
)
def test_bad_configs(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_suite(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_suite(tmp_path / "nope.toml")


@given(window=st.integers(1, 4096), extra=st.integers(0, 4096), bos=st.booleans())
def test_valid_values_roundtrip(window: int, extra: int, bos: bool) -> None:
    import tempfile

    stride = 1 + extra % window
    with tempfile.TemporaryDirectory() as tmp:
        suite = load_suite(write(Path(tmp), f"[eval]\nwindow = {window}\nstride = {stride}\n"
                                 f"bos = {str(bos).lower()}\n"))
    assert isinstance(suite, Suite)
    assert (suite.eval.window, suite.eval.stride, suite.eval.bos) == (window, stride, bos)


@given(key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
def test_any_unknown_key_is_rejected(key: str) -> None:
    import tempfile
    from dataclasses import fields

    from evalsuite.config import EvalCfg

    known = {f.name for f in fields(EvalCfg)}
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), f"[eval]\n{key} = 1\n")
        if key in known:
            return
        with pytest.raises(ConfigError, match="unknown key"):
            load_suite(path)
