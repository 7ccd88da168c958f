"""`--shard auto`: the shard from GitLab, CircleCI, Buildkite or evalsuite's own (GitHub matrix) variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalsuite.ci_shard import auto_shard
from evalsuite.cli import main
from evalsuite.errors import UsageError

GOOD = [
    pytest.param({"CI_NODE_INDEX": "1", "CI_NODE_TOTAL": "4"}, (0, 4), id="gitlab-first-is-1"),
    pytest.param({"CI_NODE_INDEX": "4", "CI_NODE_TOTAL": "4"}, (3, 4), id="gitlab-last"),
    pytest.param({"CIRCLE_NODE_INDEX": "0", "CIRCLE_NODE_TOTAL": "3"}, (0, 3), id="circleci-first-is-0"),
    pytest.param({"CIRCLE_NODE_INDEX": "2", "CIRCLE_NODE_TOTAL": "3"}, (2, 3), id="circleci-last"),
    pytest.param({"BUILDKITE_PARALLEL_JOB": "1", "BUILDKITE_PARALLEL_JOB_COUNT": "2"}, (1, 2), id="buildkite"),
    pytest.param({"EVALSUITE_SHARD_INDEX": "3", "EVALSUITE_SHARD_TOTAL": "5"}, (3, 5), id="github-matrix"),
    pytest.param({"EVALSUITE_SHARD_INDEX": "0", "EVALSUITE_SHARD_TOTAL": "1"}, (0, 1), id="one-shard"),
    pytest.param({"EVALSUITE_SHARD_INDEX": " 1 ", "EVALSUITE_SHARD_TOTAL": "2\n"}, (1, 2), id="whitespace"),
    pytest.param({"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "2", "EVALSUITE_SHARD_INDEX": "1",
                  "EVALSUITE_SHARD_TOTAL": "2"}, (1, 2), id="two-sources-agree"),
    pytest.param({"CI_NODE_TOTAL": "1", "EVALSUITE_SHARD_INDEX": "2", "EVALSUITE_SHARD_TOTAL": "3"}, (2, 3),
                 id="gitlab-plain-job-total-1-yields"),
    pytest.param({"CIRCLE_NODE_INDEX": "0", "CIRCLE_NODE_TOTAL": "1", "EVALSUITE_SHARD_INDEX": "2",
                  "EVALSUITE_SHARD_TOTAL": "3"}, (2, 3), id="circleci-no-parallelism-yields"),
    pytest.param({"CIRCLE_NODE_INDEX": "0", "CIRCLE_NODE_TOTAL": "1"}, (0, 1), id="circleci-single-node"),
    pytest.param({"CI_NODE_INDEX": "", "CI_NODE_TOTAL": "", "BUILDKITE_PARALLEL_JOB": "0",
                  "BUILDKITE_PARALLEL_JOB_COUNT": "2"}, (0, 2), id="empty-is-unset"),
]

BAD = [
    pytest.param({}, "found no parallel-job variables", id="none-set"),
    pytest.param({"HOME": "/root", "CI": "true"}, "found no parallel-job variables", id="ci-without-parallel"),
    pytest.param({"CI_NODE_TOTAL": "1"}, "found no parallel-job variables", id="gitlab-plain-job"),
    pytest.param({"CI_NODE_INDEX": "0", "CI_NODE_TOTAL": "4"}, "out of range", id="gitlab-index-0"),
    pytest.param({"CI_NODE_INDEX": "5", "CI_NODE_TOTAL": "4"}, "out of range", id="gitlab-index-past-total"),
    pytest.param({"CIRCLE_NODE_INDEX": "3", "CIRCLE_NODE_TOTAL": "3"}, "out of range", id="circleci-index-total"),
    pytest.param({"EVALSUITE_SHARD_INDEX": "0", "EVALSUITE_SHARD_TOTAL": "0"}, "out of range", id="total-0"),
    pytest.param({"EVALSUITE_SHARD_INDEX": "-1", "EVALSUITE_SHARD_TOTAL": "2"}, "not a whole number",
                 id="negative"),
    pytest.param({"EVALSUITE_SHARD_INDEX": "1.0", "EVALSUITE_SHARD_TOTAL": "2"}, "not a whole number",
                 id="float"),
    pytest.param({"EVALSUITE_SHARD_INDEX": "one", "EVALSUITE_SHARD_TOTAL": "2"}, "not a whole number", id="word"),
    pytest.param({"EVALSUITE_SHARD_INDEX": "\u0661", "EVALSUITE_SHARD_TOTAL": "2"}, "not a whole number",
                 id="non-ascii-digit"),
    pytest.param({"EVALSUITE_SHARD_INDEX": "1"}, "EVALSUITE_SHARD_TOTAL is not", id="index-without-total"),
    pytest.param({"BUILDKITE_PARALLEL_JOB_COUNT": "2"}, "BUILDKITE_PARALLEL_JOB is not", id="total-without-index"),
    pytest.param({"CI_NODE_TOTAL": "3"}, "CI_NODE_INDEX is not", id="gitlab-total-3-without-index"),
    pytest.param({"CI_NODE_INDEX": "1", "CI_NODE_TOTAL": "2", "EVALSUITE_SHARD_INDEX": "1",
                  "EVALSUITE_SHARD_TOTAL": "2"}, "disagree", id="gitlab-vs-matrix-index"),
    pytest.param({"CIRCLE_NODE_INDEX": "0", "CIRCLE_NODE_TOTAL": "2", "BUILDKITE_PARALLEL_JOB": "0",
                  "BUILDKITE_PARALLEL_JOB_COUNT": "3"}, "disagree", id="circleci-vs-buildkite-count"),
]


@pytest.mark.parametrize(("env", "shard"), GOOD)
def test_auto_shard(env: dict[str, str], shard: tuple[int, int]) -> None:
    assert auto_shard(env) == shard


@pytest.mark.parametrize(("env", "message"), BAD)
def test_auto_shard_refuses(env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message) as err:
        auto_shard(env)
    assert "\n" not in str(err.value)


def _clear(monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.ci_shard import SOURCES

    for src in SOURCES:
        monkeypatch.delenv(src.index_var, raising=False)
        monkeypatch.delenv(src.total_var, raising=False)


@pytest.mark.parametrize(("env", "message"), [
    pytest.param({}, "--shard auto found no parallel-job variables", id="outside-ci"),
    pytest.param({"CI_NODE_INDEX": "1", "CI_NODE_TOTAL": "2", "CIRCLE_NODE_INDEX": "0",
                  "CIRCLE_NODE_TOTAL": "3"}, "disagree", id="disagree"),
    pytest.param({"CI_NODE_INDEX": "9", "CI_NODE_TOTAL": "2"}, "out of range", id="out-of-range"),
])
def test_cli_shard_auto_exit_2_before_model_work(env: dict[str, str], message: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _clear(monkeypatch)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "r.json"
    assert main(["eval", "--shard", "auto", "--json-out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_cli_shard_auto_reads_the_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parser leaves 'auto' for the environment; gate still refuses a shard (it would judge a part)."""
    from evalsuite.cli_args import build_parser

    _clear(monkeypatch)
    assert build_parser().parse_args(["eval", "--shard", "auto"]).shard == "auto"
    monkeypatch.setenv("CI_NODE_INDEX", "2")
    monkeypatch.setenv("CI_NODE_TOTAL", "2")
    assert main(["gate", "--shard", "auto"]) == 2
    with pytest.raises(UsageError, match="or auto"):
        main_parse(["eval", "--shard", "autoo"])


def main_parse(argv: list[str]) -> object:
    from evalsuite.cli_args import build_parser

    return build_parser().parse_args(argv)


def test_json_out_names_the_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    """One command line for every job: {index} and {count} in --json-out are the job's shard."""
    from evalsuite.cli_args import build_parser
    from evalsuite.cli_ci import resolve_shard

    _clear(monkeypatch)
    monkeypatch.setenv("CI_NODE_INDEX", "3")
    monkeypatch.setenv("CI_NODE_TOTAL", "4")
    args = build_parser().parse_args(["eval", "--shard", "auto", "--json-out", "r/shard-{index}-of-{count}.json"])
    resolve_shard(args)
    assert args.shard == (2, 4) and args.json_out == Path("r/shard-2-of-4.json")
    args = build_parser().parse_args(["eval", "--shard", "1/2", "--json-out", "s{index}.json"])
    resolve_shard(args)
    assert args.json_out == Path("s1.json")
