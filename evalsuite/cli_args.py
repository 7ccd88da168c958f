"""The command line's parser: every command, its flags and their help (defaults and examples are
added by `report/help_text.py`). A parse error is a UsageError: one line, exit 2."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn

from evalsuite import __version__
from evalsuite.errors import UsageError
from evalsuite.roles import RUNNER_NAMES

EXIT_HELP = ("exit codes: 0 every check passed; 1 a check failed or scoring broke; 2 usage, config or input "
             "error; 130 interrupted (SIGINT); 143 terminated (SIGTERM). On 130/143 the builder subprocess is "
             "stopped, temp folders are removed and per-window results journaled so far are kept.")



class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see '{self.prog} --help'")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="evalsuite", description="Perplexity gate for quantized language models.",
                     epilog=EXIT_HELP)
    parser.add_argument("--version", action="version", version=f"evalsuite {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    ev = sub.add_parser("eval", help="score the model (and variants) on the datasets; print a table", epilog=EXIT_HELP)
    add_run_args(ev)
    gate = sub.add_parser("gate", help="score, then check every threshold; exit 1 when any fails", epilog=EXIT_HELP)
    add_run_args(gate)
    add_gate_args(gate)
    from evalsuite.cli_ci import add_ci_parsers, add_executor_args

    for p in (ev, gate):
        add_executor_args(p)
    val = sub.add_parser("validate", help="check a suite and its inputs in seconds, without scoring; exit 0 or 2")
    add_run_args(val)
    val.add_argument("--baseline", type=Path, help="also check this baseline file (default: the suite's)")
    val.add_argument("--no-baseline", action="store_true", help="do not check the suite's baseline file")
    bn = sub.add_parser("bench", help="measure tokens/s, peak RSS and overhead over bare ONNX Runtime")
    bn.add_argument("--config", type=Path, help="suite TOML whose model and variants are measured")
    bn.add_argument("--data-dir", help="local corpora folder (else $EVALSUITE_DATA_DIR, else the hub)")
    bn.add_argument("--max-tokens", type=int, default=2048, help="tokens per runner (default 2048)")
    bn.add_argument("--threads", type=int, help="threads for every runner (default: all cores)")
    bn.add_argument("--eval-timing", action="store_true", help="also time the default gate, cold and warm cache")
    bn.add_argument("--task-examples", type=int, default=40,
                    help="HellaSwag examples for the task-speed rows (default 40; 0 skips them)")
    bn.add_argument("--json-out", type=Path, help="write the measurements here")
    mg = sub.add_parser("merge", help="combine --shard i/n result files into the numbers of one run")
    mg.add_argument("shards", nargs="+", type=Path, help="results JSON of every shard")
    mg.add_argument("--json-out", type=Path, required=True, help="write the merged results JSON here")
    add_cache_parser(sub)
    add_ci_parsers(sub, add_progress_args)
    base = sub.add_parser("baseline", help="manage stored baselines")
    bsub = base.add_subparsers(dest="baseline_command", required=True, parser_class=_Parser)
    upd = bsub.add_parser("update", help="write a baseline file from a results JSON (or a fresh run)")
    add_run_args(upd)
    upd.add_argument("--results", type=Path, help="results JSON to store (default: run the suite now)")
    upd.add_argument("--out", type=Path, required=True, help="baseline file to write, e.g. baselines/x.json")
    from evalsuite.report.help_text import decorate

    return decorate(parser)


def add_cache_parser(sub: Any) -> None:
    cache = sub.add_parser("cache", help="list, verify or clear the cache ($EVALSUITE_CACHE, else ~/.cache/evalsuite)")
    csub = cache.add_subparsers(dest="cache_command", required=True, parser_class=_Parser)
    csub.add_parser("ls", help="every entry with its size and last use")
    verify = csub.add_parser("verify", help="check every entry against its manifest; exit 1 if any is broken")
    verify.add_argument("--fast", action="store_true",
                        help="hash only files whose size/mtime/ctime changed (what every run does)")
    clear = csub.add_parser("clear", help="delete entries (all, or those unused for --older-than days)")
    clear.add_argument("--older-than", type=float, metavar="DAYS", help="only entries last used more than DAYS ago")


def add_gate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", type=Path, help="gate this results JSON instead of scoring again")
    p.add_argument("--baseline", type=Path, help="check every run against this stored baseline (overrides the suite's)")
    p.add_argument("--no-baseline", action="store_true", help="skip the suite's baseline regression checks")
    p.add_argument("--junit", type=Path, help="write JUnit XML (one testcase per check)")
    p.add_argument("--markdown", type=Path, help="write a Markdown summary (also $GITHUB_STEP_SUMMARY)")


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="suite TOML (default: the packaged default suite)")
    p.add_argument("--model", help="HF folder, .gguf file, hub id, or smollm2-135m-instruct | gemma3-270m")
    p.add_argument("--dataset", action="append",
                   help="dataset[:split] or path/to/mine.toml[:split]; repeatable (default: the suite's)")
    p.add_argument("--text", action="append", metavar="PATH",
                   help="a local UTF-8 text file scored as one stream, labelled by its file name; repeatable "
                   "(with --dataset or alone, replaces the suite's datasets)")
    p.add_argument("--per-document", action="store_true", default=None,
                   help="score each row/document separately from a prefix token (lm-eval rolling loglikelihood)")
    p.add_argument("--bos", action=argparse.BooleanOptionalAction, default=None,
                   help="put the tokenizer's BOS token before the stream (default: the suite's bos)")
    p.add_argument("--window", type=int, help="tokens fed per window")
    p.add_argument("--stride", type=int, help="new tokens scored per window (<= window)")
    p.add_argument("--max-tokens", type=int, help="truncate each token stream to its first N tokens")
    p.add_argument("--runner", action="append", choices=list(RUNNER_NAMES), help="repeatable")
    p.add_argument("--task", action="append", metavar="NAME", help="accuracy task (hellaswag, arc_easy, ... or "
                   "path/to/mine.toml); repeatable. --dataset, --text and --task together replace the suite's "
                   "whole selection: name only tasks to score only tasks")
    p.add_argument("--limit", type=int, help="score the first N examples of each task (lm-eval's --limit)")
    p.add_argument("--samples-out", type=Path, help="write every task example's scores as JSON lines here")
    p.add_argument("--provider", help="ONNX Runtime execution provider: cpu, cuda, dml (default cpu)")
    p.add_argument("--threads", type=int, help="intra-op threads for torch and ONNX Runtime")
    p.add_argument("--batch-size", type=int, help="windows of equal shape per session.run / torch forward "
                   "(default from the suite, else 1)")
    p.add_argument("--torch-device", choices=["auto", "cpu", "cuda"],
                   help="device of the torch reference (default auto: cuda when --provider cuda and torch has CUDA)")
    p.add_argument("--data-dir", help="local corpora folder (else $EVALSUITE_DATA_DIR, else the hub)")
    p.add_argument("--json-out", type=Path, help="write the results JSON here ({index} and {count} are replaced "
                   "by the shard's, e.g. results/shard-{index}-of-{count}.json)")
    p.add_argument("--shard", type=parse_shard, metavar="I/N",
                   help="score only windows I, I+N, I+2N, ... (0-based); combine with 'evalsuite merge'. "
                   "auto: I and N from the CI's parallel-job variables (GitLab, CircleCI, Buildkite; "
                   "GitHub Actions: EVALSUITE_SHARD_INDEX/EVALSUITE_SHARD_TOTAL from the matrix)")
    p.add_argument("--plot", type=Path, metavar="DIR", help="write PNG plots (ΔNLL along the text, KLD) here")
    p.add_argument("--fresh", action="store_true",
                   help="ignore per-window results stored by earlier (interrupted or identical) runs and "
                   "rebuild every cached model, ONNX build and token stream")
    p.add_argument("--reference", type=Path,
                   help="print a stored or published results file beside this run "
                   "(e.g. baselines/phi3-mini-published.json)")
    add_progress_args(p)


def add_progress_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", choices=["auto", "rich", "plain", "none"], default="auto",
                   help="rich: bars; plain: a log line per stage start/end and a heartbeat at most every "
                   "$EVALSUITE_PROGRESS_INTERVAL s (30); auto (default): rich on a terminal, plain otherwise")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output (same as --progress none)")


def parse_shard(text: str) -> tuple[int, int] | str:
    if text == "auto":  # resolved from the environment after parsing (cli._main, ci_shard.py)
        return text
    index, sep, count = text.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or not 0 <= int(index) < int(count):
        raise argparse.ArgumentTypeError(f"shard must be I/N with 0 <= I < N, e.g. 0/4, or auto; got '{text}'")
    return int(index), int(count)
