"""The window plan travels with each run: planned again from the record, per-document shards merge exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalsuite.data.windows import Plan, document_plan, plan_documents, plan_windows
from evalsuite.errors import DataError
from evalsuite.schema import FIELD_NAMES, TIMING_FIELDS, RunRecord, plan_of


@pytest.mark.parametrize(("lengths", "window", "stride"), [
    ((5,), 4, 2), ((1, 9, 2, 30), 8, 8), ((3, 1, 1, 17), 6, 1), ((64, 65, 2), 64, 48),
])
def test_a_recorded_plan_plans_the_same_windows(lengths: tuple[int, ...], window: int, stride: int) -> None:
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    bounds = [(s, s + n) for s, n in zip(starts, lengths, strict=True)]
    plan = document_plan(bounds, window, stride)
    assert plan.documents == lengths and plan.n_tokens == sum(lengths)
    assert plan.windows() == plan_documents(bounds, window, stride)
    assert plan.count() == len(plan.windows())
    assert plan.targets() == sum(w.n_targets for w in plan.windows())
    stream = Plan(sum(lengths), window, stride)
    assert stream.windows() == plan_windows(sum(lengths), window, stride)
    assert (stream.count(), stream.targets()) == (len(stream.windows()), sum(lengths) - 1)


def test_document_bounds_with_a_gap_are_refused() -> None:
    with pytest.raises(DataError, match="end to end"):
        document_plan([(0, 4), (5, 9)], 4, 2)


def _record(**kw: object) -> RunRecord:
    base = {"model": "m", "variant": "v", "runner": "r", "dataset": "d", "split": "test", "window": 8,
            "stride": 8, "bos": False, "max_tokens": None, "tokens_in_stream": 12, "tokens_scored": 10,
            "windows": 2, "nll_sum": 20.0, "nll_mean": 2.0, "ppl": 7.38905609893065, "seconds": 1.0,
            "tokens_per_s": 10.0}
    return RunRecord(**{**base, **kw})  # type: ignore[arg-type]


def test_run_record_round_trips_and_adds_no_key_to_a_one_stream_run() -> None:
    one = _record()
    assert list(one.to_json()) == [n for n in FIELD_NAMES if n != "documents"]  # the schema-2 run, unchanged
    assert RunRecord.from_json(one.to_json()) == one and one.plan == Plan(12, 8, 8)
    docs = _record(documents=[5, 7])
    assert docs.to_json()["documents"] == [5, 7] and RunRecord.from_json(docs.to_json()) == docs
    assert plan_of(docs.to_json()).windows() == plan_documents([(0, 5), (5, 12)], 8, 8) == docs.plan.windows()
    assert set(TIMING_FIELDS) == {"seconds", "tokens_per_s"}


def test_per_document_shards_merge_bit_for_bit(tiny_llama_dir: Path, data_dir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.cli import main
    from evalsuite.gate import results

    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EVALSUITE_DATA_DIR", str(data_dir))
    args = ["eval", "--model", str(tiny_llama_dir), "--runner", "torch", "--dataset", "ptb", "--per-document",
            "--max-tokens", "900", "--window", "16", "--stride", "8", "--fresh"]
    assert main([*args, "--json-out", str(tmp_path / "full.json")]) == 0
    for i in range(3):
        assert main([*args, "--shard", f"{i}/3", "--json-out", str(tmp_path / f"s{i}.json")]) == 0
    assert main(["merge", *(str(tmp_path / f"s{i}.json") for i in (1, 2, 0)),
                 "--json-out", str(tmp_path / "merged.json")]) == 0
    full, merged = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("full", "merged"))
    (run,) = full["runs"]
    assert len(run["documents"]) >= 5 and sum(run["documents"]) == run["tokens_in_stream"] == 900
    # every document starts from its own prefix token, which is no target: not one stream's plan
    assert (run["windows"], run["tokens_scored"]) == (plan_of(run).count(), 900 - len(run["documents"]))
    timing = set(TIMING_FIELDS)
    assert [{k: v for k, v in r.items() if k not in timing} for r in merged["runs"]] == \
        [{k: v for k, v in r.items() if k not in timing} for r in full["runs"]]  # every number, bit for bit
    results.read(tmp_path / "merged.json", "results", strict=True)  # and the merged counts check out

    forged = {**full, "runs": [{**run, "documents": [*run["documents"][:-2], run["documents"][-2] +
                                                     run["documents"][-1]]}]}  # two documents as one
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    with pytest.raises(DataError, match="documents have"):
        results.read(tmp_path / "forged.json", "results", strict=True)
    short = {**full, "runs": [{**run, "documents": run["documents"][:-1]}]}
    (tmp_path / "short.json").write_text(json.dumps(short))
    with pytest.raises(DataError, match="documents add up to"):
        results.read(tmp_path / "short.json", "results")
