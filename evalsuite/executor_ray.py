"""`eval|gate --executor ray --shards N`: the shards of one run as Ray tasks, merged as `evalsuite merge` merges.

The driver (this process) checks what it can before any model work: the options, that Ray is
installed, that the cluster answers and can hold one shard's CPU/GPU request (cli_ci.py also checks
that $EVALSUITE_CACHE was prepared for this suite, `prepare.verify`). It then submits one task per
shard with that request. A task, on whichever node Ray picks:

1. seeds a cache of its own, `$TMPDIR/evalsuite-ray-<run>/shard-<i>/cache`, with the prepared entries:
   from the object store (`--worker-cache object`, the default: the driver packs them once,
   uncompressed) or copied from the driver's cache folder (`shared`: the same path on every node);
2. checks it on arrival with `evalsuite prepare --verify` (a damaged copy: the shard fails, exit 2);
3. scores its shard with `evalsuite eval --shard i/N --json-out ...` in a child process, the command
   of a CI score job (Ray's CUDA_VISIBLE_DEVICES and OMP_NUM_THREADS reach it), and returns the
   document's bytes; the child dies with its worker (PR_SET_PDEATHSIG);
4. removes its cache (a task killed first leaves it behind: the next task on that node, or the
   driver on its own node, removes the caches whose worker is gone).

A worker that dies (killed, out of memory, its node lost) is run again by Ray, `--retries` times; a
child killed by a signal counts as lost too. A shard that fails for good (its child exits non-zero
without a document, or the retries are spent) cancels the others and fails the command with its
one-line error: no result file is written and a gate never passes on part of a run. The driver reads
every document with the reader `merge` uses (`results.read(..., "shard")`, strict) and merges them with
`task_merge.merge_shards`, so the numbers are the unsharded run's to the last bit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError, ExitCode, UsageError

INSTALL = "pip install 'evalsuite[ray]'"
WORKER_CACHES = ("object", "shared")
CONNECT_TIMEOUT_S = 5.0
CANCEL_WAIT_S = 10.0
# Runs the real command in place of itself after asking the kernel to kill it with its parent (Linux;
# elsewhere a lost worker's child runs to its end): a shard never outlives the task that owns it.
GUARD = ("import ctypes, os, signal, sys\n"
         "try:\n    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"
         "except (OSError, AttributeError):\n    pass\n"
         "if os.getppid() != int(sys.argv[1]):\n    sys.exit(137)\n"
         "os.execv(sys.executable, [sys.executable, '-m', 'evalsuite', *sys.argv[2:]])\n")


@dataclass(frozen=True)
class RayOptions:
    shards: int
    address: str | None
    cpus: float
    gpus: float
    retries: int
    worker_cache: str


@dataclass(frozen=True)
class ShardJob:
    """Everything one Ray task needs, as plain data (pickled to the worker)."""

    index: int
    count: int
    eval_argv: tuple[str, ...]  # `eval` and its options, without --shard / --json-out
    verify_argv: tuple[str, ...]  # `prepare --config ... --verify`
    cwd: str  # the driver's working directory: relative paths mean the same on the worker
    env: tuple[tuple[str, str], ...]  # the driver's EVALSUITE_* / HF_* settings
    run_id: str
    source: str | None  # the driver's cache folder (--worker-cache shared), else None
    entries: tuple[str, ...]  # the prepared entries and manifest, relative to the cache


@dataclass(frozen=True)
class ShardOutcome:
    index: int
    returncode: int
    document: bytes | None  # the shard's results JSON; None: it failed for good
    error: str  # the child's own one-line error when it failed
    node: str
    seconds: float
    resources: tuple[tuple[str, float], ...]  # what Ray assigned the task (CPU, GPU)
    built: tuple[str, ...]  # cache entries the shard had to build (a complete prepared cache: none)


class ShardLost(Exception):
    """The shard's child was killed by a signal (out of memory, a lost node): Ray runs the task again."""


def options(args: Any) -> RayOptions | None:
    """The executor options of `eval` / `gate` (None: score here), checked before the suite is read:
    every misuse, a missing Ray or an address where no cluster answers is a UsageError."""
    given = {"--shards": args.shards, "--address": args.address, "--cpus-per-shard": args.cpus_per_shard,
             "--gpus-per-shard": args.gpus_per_shard, "--retries": args.retries, "--worker-cache": args.worker_cache}
    if args.executor != "ray":
        flag = next((f for f, v in given.items() if v is not None), None)
        if flag:
            raise UsageError(f"{flag} needs --executor ray (to score one shard of a CI matrix here: --shard I/N)")
        return None
    if args.shards is None:
        raise UsageError("--executor ray needs --shards N (how many Ray tasks score the run)")
    if args.shards < 1:
        raise UsageError(f"--shards must be at least 1, got {args.shards}")
    for flag, dest, why in (("--shard", "shard", "it runs every shard itself"),
                            ("--results", "results", "it scores the suite; gate a stored file without it"),
                            ("--fresh", "fresh", "the workers start from the prepared cache: run 'evalsuite "
                             "prepare --fresh' first"),
                            ("--samples-out", "samples_out", "score the examples in one run for their samples"),
                            ("--plot", "plot", "gate the merged file with 'gate --results FILE --plot DIR'")):
        if getattr(args, dest, None):
            raise UsageError(f"--executor ray does not take {flag}: {why}")
    def given_or(value: Any, default: Any) -> Any:
        return default if value is None else value

    opts = RayOptions(args.shards, args.address, float(given_or(args.cpus_per_shard, 1.0)),
                      float(given_or(args.gpus_per_shard, 0.0)), int(given_or(args.retries, 3)),
                      str(given_or(args.worker_cache, WORKER_CACHES[0])))
    for flag, value in (("--cpus-per-shard", opts.cpus), ("--gpus-per-shard", opts.gpus), ("--retries", opts.retries)):
        if value < 0:
            raise UsageError(f"{flag} must be at least 0, got {value:g}")
    import_ray()
    check_address(args.address)
    return opts


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(f"--executor ray needs Ray, which is not installed in this environment: {INSTALL}") from None
    return ray


def check_address(address: str | None) -> None:
    """host:port (or ray://host:port) must answer a TCP connection within seconds (Ray itself would
    keep retrying). None and 'auto' are Ray's own to resolve."""
    if address is None or address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--address {address!r} is not HOST:PORT of a Ray head (e.g. 10.0.0.5:6379, "
                         "ray://10.0.0.5:10001) or 'auto'")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise UsageError(f"--address {address}: no Ray cluster answers there ({err.strerror or err}); start one "
                         "with 'ray start --head' or fix --address") from None


@contextlib.contextmanager
def connected(ray: Any, address: str | None) -> Iterator[None]:
    """Join the cluster at `address` (None: $RAY_ADDRESS, else a local Ray started for this run) for
    the block; a session the caller opened already (a test, a notebook) is used and left open."""
    import warnings

    # Ray 2.5x says, once per run, that a later version will stop hiding GPUs from num_gpus=0 tasks.
    warnings.filterwarnings("ignore", message="Tip: In future versions of Ray", category=FutureWarning)
    if ray.is_initialized():
        yield
        return
    local = address is None and not os.environ.get("RAY_ADDRESS")
    try:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING",
                 **({"include_dashboard": False} if local else {}))
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise UsageError(f"cannot join the Ray cluster at {address or os.environ.get('RAY_ADDRESS') or 'local'}: "
                         f"{first_line(err)}") from None
    try:
        yield
    finally:
        ray.shutdown()


def check_fits(ray: Any, opts: RayOptions) -> None:
    """A request that no node can hold would wait forever: refuse it now (an autoscaling cluster must
    have a node big enough for one shard when the run starts)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for name, want in (("CPU", opts.cpus), ("GPU", opts.gpus)):
        have = max((float(r.get(name, 0.0)) for r in nodes), default=0.0)
        if want > have:
            raise UsageError(f"a shard asks for {want:g} {name} but the largest node of the Ray cluster has "
                             f"{have:g}; lower --{name.lower()}s-per-shard or add nodes")


def pack(root: Path, entries: Sequence[str]) -> bytes:
    """The prepared entries as one uncompressed tar (ONNX weights do not compress), links kept."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel in entries:
            tar.add(root / rel, arcname=rel)
    return buf.getvalue()


def seed(job: ShardJob, packed: bytes | None, dest: Path) -> None:
    dest.mkdir(parents=True)
    if packed is not None:
        with tarfile.open(fileobj=io.BytesIO(packed)) as tar:
            tar.extractall(dest, filter="data")
        return
    assert job.source is not None
    for rel in job.entries:
        src, dst = Path(job.source) / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir() and not src.is_symlink():
            shutil.copytree(src, dst, symlinks=True)
        else:
            shutil.copy2(src, dst, follow_symlinks=False)


def listing(cache: Path) -> set[str]:
    """The entries below the cache's folders of entries (not the journal): what a build would add."""
    return {f"{kind}/{p.name}" for kind in ("models", "onnx", "awq", "tokens") if (cache / kind).is_dir()
            for p in (cache / kind).iterdir() if not p.name.endswith((".lock", ".tmp"))}


def first_line(err: BaseException | str) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__


def child_error(stderr: str) -> str:
    """The child's own one-line error (cli.main prints it last), without its 'evalsuite: error:' prefix."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    said = [ln for ln in lines if ln.startswith("evalsuite: ") and "error" in ln[:30]]
    line = (said or lines or ["no output"])[-1]
    return line.removeprefix("evalsuite: error: ").removeprefix("evalsuite: ")[:500]


def run_child(argv: Sequence[str], job: ShardJob, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if not Path(job.cwd).is_dir():
        raise FileNotFoundError(f"the driver's working directory {job.cwd} does not exist on this node; run "
                                "from a folder every node shares")
    return subprocess.run([sys.executable, "-c", GUARD, str(os.getpid()), *argv], cwd=job.cwd, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)


def score_shard(job: ShardJob, packed: bytes | None) -> ShardOutcome:
    """One Ray task: seed, verify, score shard `job.index`, return its document (see the module doc)."""
    import ray

    start = time.perf_counter()
    work = Path(tempfile.gettempdir()) / f"evalsuite-ray-{job.run_id}" / f"shard-{job.index}"
    cache, out = work / "cache", work / f"shard-{job.index}-of-{job.count}.json"
    ctx = ray.get_runtime_context()
    node = f"{socket.gethostname()} ({ctx.get_node_id()[:8]})"
    resources = tuple(sorted((k, float(v)) for k, v in ctx.get_assigned_resources().items()))
    outcome = outcome_of(job, node, resources, start)
    sweep()  # caches of attempts whose worker died on this node
    shutil.rmtree(work, ignore_errors=True)  # an attempt of this shard that died here (Ray retries after)
    try:
        work.mkdir(parents=True)
        (work / "owner").write_text(str(os.getpid()))
        seed(job, packed, cache)
        before = listing(cache)
        env = {**os.environ, **dict(job.env), "EVALSUITE_CACHE": str(cache)}
        shard = ("--shard", f"{job.index}/{job.count}", "--json-out", str(out))
        for argv in (job.verify_argv, (*job.eval_argv, *shard)):
            proc = run_child(argv, job, env)
            if proc.returncode < 0:
                raise ShardLost(f"shard {job.index}/{job.count}: its process was killed by signal "
                                f"{-proc.returncode} on {node}")
            if proc.returncode and not (argv[0] == "eval" and out.is_file()):
                return outcome(proc.returncode, None, child_error(proc.stderr))
        return outcome(proc.returncode, out.read_bytes(), "", tuple(sorted(listing(cache) - before)))
    except OSError as err:
        return outcome(ExitCode.GATE_FAILED, None, f"on {node}: {err}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(OSError):
            work.parent.rmdir()  # the run's folder, once its last shard on this node is done


def _owner_alive(owner: Path) -> bool:
    try:
        os.kill(int(owner.read_text()), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError):  # another user's process, or unreadable: not ours to judge
        return True
    return True


def sweep(run_id: str = "*", wait_s: float = 0.0) -> None:
    """Remove the shard caches on this node whose worker is gone: a worker killed mid-task (lost, or
    cancelled when another shard failed) never reaches its own cleanup. Every task sweeps its node
    when it starts; the driver sweeps its own node for its run, waiting `wait_s` for cancelled
    workers to exit."""
    deadline = time.monotonic() + wait_s
    for owner in Path(tempfile.gettempdir()).glob(f"evalsuite-ray-{run_id}/shard-*/owner"):
        while _owner_alive(owner) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _owner_alive(owner):
            shutil.rmtree(owner.parent, ignore_errors=True)
            with contextlib.suppress(OSError):
                owner.parent.parent.rmdir()


def outcome_of(job: ShardJob, node: str, resources: tuple[tuple[str, float], ...], start: float
               ) -> Callable[..., ShardOutcome]:
    """`outcome(code, document, error, built)`: the ShardOutcome of this task."""
    def outcome(code: int, document: bytes | None, error: str, built: tuple[str, ...] = ()) -> ShardOutcome:
        return ShardOutcome(job.index, int(code), document, error, node, round(time.perf_counter() - start, 2),
                            resources, built)

    return outcome


def failure(index: int, count: int, message: str, code: int = ExitCode.GATE_FAILED) -> EvalsuiteError:
    err = EvalsuiteError(f"shard {index}/{count} failed for good: {message}; the run has no result (no shard "
                         "is merged without the others)")
    err.exit_code = ExitCode.USAGE if code == ExitCode.USAGE else ExitCode.GATE_FAILED
    return err


def collect(ray: Any, refs: dict[Any, int], count: int, retries: int, quiet: bool) -> list[ShardOutcome]:
    """Every shard's outcome; the first that failed for good cancels the rest and is raised."""
    pending, done = list(refs), []
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            index = refs[ready[0]]
            try:
                outcome: ShardOutcome = ray.get(ready[0])
            except ray.exceptions.RayError as err:
                cause = getattr(err, "cause", None)  # what the task raised; None: its worker or node was lost
                lost = cause is None or isinstance(cause, ShardLost)
                raise failure(index, count, first_line(cause or err) + (f" (Ray ran it {retries + 1} time(s))"
                                                                         if lost else "")) from None
            if outcome.document is None:
                raise failure(index, count, f"{outcome.error} (exit {outcome.returncode} on {outcome.node})",
                              outcome.returncode)
            if not quiet:
                print(f"evalsuite: ray: shard {index}/{count} scored on {outcome.node} in {outcome.seconds:.1f} s ("
                      f"{', '.join(f'{k} {v:g}' for k, v in outcome.resources) or 'no resources'})", file=sys.stderr)
            if outcome.built:
                print(f"evalsuite: note: shard {index}/{count} built {len(outcome.built)} cache entries the prepared "
                      f"cache lacked ({', '.join(outcome.built[:3])}); prepare again with this suite", file=sys.stderr)
            done.append(outcome)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if pending:  # let the cancelled tasks settle before the driver sweeps their caches
            ray.wait(pending, num_returns=len(pending), timeout=CANCEL_WAIT_S)
    return sorted(done, key=lambda o: o.index)


def merged(outcomes: Sequence[ShardOutcome]) -> dict[str, Any]:
    """Read each document as `merge` reads a shard file (strict), then merge as `merge` does."""
    from evalsuite.gate import results
    from evalsuite.gate.task_merge import merge_shards

    with tempfile.TemporaryDirectory(prefix="evalsuite-merge-") as tmp:
        docs = []
        for o in outcomes:
            path = Path(tmp) / f"shard-{o.index}-of-{len(outcomes)}.json"
            path.write_bytes(o.document or b"")
            docs.append(results.read(path, "shard"))
        return merge_shards(docs)


def score_on_ray(opts: RayOptions, job: ShardJob, cache_root: Path, quiet: bool = False) -> dict[str, Any]:
    """Every shard of `job` (its index aside) as a Ray task; the merged results document (`quiet`: no
    line per finished shard)."""
    ray = import_ray()
    with connected(ray, opts.address):
        check_fits(ray, opts)
        task = ray.remote(num_cpus=opts.cpus, num_gpus=opts.gpus, max_retries=opts.retries,
                          retry_exceptions=[ShardLost])(score_shard)
        packed = ray.put(pack(cache_root, job.entries)) if opts.worker_cache == "object" else None
        refs = {task.options(name=f"evalsuite-shard-{i}-of-{opts.shards}").remote(
            dataclasses.replace(job, index=i), packed): i for i in range(opts.shards)}
        try:
            outcomes = collect(ray, refs, opts.shards, opts.retries, quiet)
        finally:
            sweep(job.run_id, wait_s=CANCEL_WAIT_S)
    return merged(outcomes)
