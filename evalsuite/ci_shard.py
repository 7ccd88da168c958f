"""`--shard auto`: this job's shard index and count, read from the CI's own parallel-job variables.

GitLab (`parallel: N`) sets `CI_NODE_INDEX` (1-based) and `CI_NODE_TOTAL`; CircleCI (`parallelism`)
`CIRCLE_NODE_INDEX` / `CIRCLE_NODE_TOTAL` (0-based); Buildkite (`parallelism`) `BUILDKITE_PARALLEL_JOB`
/ `BUILDKITE_PARALLEL_JOB_COUNT` (0-based). GitHub Actions has no such variables: a matrix sets
`EVALSUITE_SHARD_INDEX` / `EVALSUITE_SHARD_TOTAL` (0-based) itself. GitLab sets `CI_NODE_TOTAL=1` and
CircleCI `0`/`1` in every job that is not parallel: a CI system that reports a single node yields to
another source that reports several. Anything else that is unclear (no source, a half-set pair, a
value that is not a number or out of range, two sources naming different shards) is a usage error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from evalsuite.errors import UsageError


@dataclass(frozen=True)
class ShardSource:
    system: str
    index_var: str
    total_var: str
    base: int  # the index of the first job: 1 on GitLab, 0 elsewhere
    implicit_single: bool  # the system sets index/total = first/1 in jobs that are not parallel


SOURCES = (
    ShardSource("evalsuite", "EVALSUITE_SHARD_INDEX", "EVALSUITE_SHARD_TOTAL", 0, False),
    ShardSource("GitLab", "CI_NODE_INDEX", "CI_NODE_TOTAL", 1, True),
    ShardSource("CircleCI", "CIRCLE_NODE_INDEX", "CIRCLE_NODE_TOTAL", 0, True),
    ShardSource("Buildkite", "BUILDKITE_PARALLEL_JOB", "BUILDKITE_PARALLEL_JOB_COUNT", 0, False),
)
HINT = ("set EVALSUITE_SHARD_INDEX (0-based) and EVALSUITE_SHARD_TOTAL from the CI matrix, or give "
        "--shard I/N")


def _number(src: ShardSource, var: str, value: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise UsageError(f"--shard auto: {var}={value!r} ({src.system}) is not a whole number; {HINT}")
    return int(value)


def _read(src: ShardSource, env: Mapping[str, str]) -> tuple[int, int] | None:
    """(0-based index, count) that `src` names, None when it names nothing."""
    index, total = env.get(src.index_var, "").strip(), env.get(src.total_var, "").strip()
    if not index and not total:
        return None
    if not index and src.implicit_single and total == "1":  # GitLab: CI_NODE_TOTAL=1 in every plain job
        return None
    if not index or not total:
        have, miss = (src.index_var, src.total_var) if index else (src.total_var, src.index_var)
        raise UsageError(f"--shard auto: {have} is set but {miss} is not ({src.system}); set both or neither")
    i, n = _number(src, src.index_var, index), _number(src, src.total_var, total)
    if n < 1:
        raise UsageError(f"--shard auto: {src.total_var}={total} ({src.system}) is out of range; it counts the "
                         "parallel jobs and must be at least 1")
    if not src.base <= i < n + src.base:
        raise UsageError(f"--shard auto: {src.index_var}={index} is out of range for {src.total_var}={total} "
                         f"({src.system} numbers its jobs {src.base}..{n - 1 + src.base})")
    return i - src.base, n


def auto_shard(env: Mapping[str, str]) -> tuple[int, int]:
    """This job's (index, count), 0-based, from the first CI variables `env` holds (see module doc)."""
    found = {src: shard for src in SOURCES if (shard := _read(src, env)) is not None}
    if not found:
        names = ", ".join(f"{s.system} {s.index_var}/{s.total_var}" for s in SOURCES[1:])
        raise UsageError(f"--shard auto found no parallel-job variables ({names}); on GitHub Actions {HINT}")
    # A CI system's own "single node" default yields to a source naming several shards.
    several = {s: v for s, v in found.items() if v[1] > 1 or not s.implicit_single}
    if several:
        found = several
    if len(set(found.values())) > 1:
        said = "; ".join(f"{s.system} says shard {i}/{n} ({s.index_var}={env[s.index_var].strip()}, "
                         f"{s.total_var}={env[s.total_var].strip()})" for s, (i, n) in found.items())
        raise UsageError(f"--shard auto: the CI variables disagree ({said}); unset one or give --shard I/N")
    return next(iter(found.values()))


def describe(env: Mapping[str, str]) -> str:
    """Which variables `auto_shard` read, for a log line ("GitLab CI_NODE_INDEX=2, CI_NODE_TOTAL=4")."""
    out = []
    for src in SOURCES:
        if env.get(src.index_var, "").strip():
            out.append(f"{src.system} {src.index_var}={env[src.index_var].strip()}, "
                       f"{src.total_var}={env.get(src.total_var, '').strip()}")
    return "; ".join(out)
