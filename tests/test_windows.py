"""The window planner on synthetic token counts: exact windows, then properties (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evalsuite.data.windows import Window, plan_windows, shard_windows
from evalsuite.errors import DataError, UsageError

W = Window


@pytest.mark.parametrize(
    ("n", "window", "stride", "expected"),
    [
        pytest.param(10, 4, 2, [W(0, 1, 5), W(2, 5, 7), W(4, 7, 9), W(5, 9, 10)], id="stride<window"),
        pytest.param(10, 4, 4, [W(0, 1, 5), W(4, 5, 9), W(5, 9, 10)], id="stride==window"),
        pytest.param(9, 4, 4, [W(0, 1, 5), W(4, 5, 9)], id="exact-fit"),
        pytest.param(3, 8, 4, [W(0, 1, 3)], id="n<window"),
        pytest.param(2, 8, 8, [W(0, 1, 2)], id="two-tokens"),
        pytest.param(5, 4, 1, [W(0, 1, 5)], id="n==window+1"),
        pytest.param(7, 4, 1, [W(0, 1, 5), W(1, 5, 6), W(2, 6, 7)], id="stride-1"),
        pytest.param(12, 4, 3, [W(0, 1, 5), W(3, 5, 8), W(6, 8, 11), W(7, 11, 12)], id="last-partial"),
    ],
)
def test_exact_windows(n: int, window: int, stride: int, expected: list[Window]) -> None:
    assert plan_windows(n, window, stride) == expected


@pytest.mark.parametrize(
    ("n", "window", "stride", "error"),
    [
        pytest.param(10, 0, 1, UsageError, id="window-0"),
        pytest.param(10, 4, 0, UsageError, id="stride-0"),
        pytest.param(10, 4, 5, UsageError, id="stride>window"),
        pytest.param(10, -4, -1, UsageError, id="negative"),
        pytest.param(1, 4, 2, DataError, id="one-token"),
        pytest.param(0, 4, 2, DataError, id="no-tokens"),
    ],
)
def test_bad_policy(n: int, window: int, stride: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        plan_windows(n, window, stride)


@given(n=st.integers(2, 3000), window=st.integers(1, 300), data=st.data())
def test_every_token_scored_once_with_context(n: int, window: int, data: st.DataObject) -> None:
    stride = data.draw(st.integers(1, window))
    windows = plan_windows(n, window, stride)
    targets = [t for w in windows for t in range(w.first_target, w.end)]
    assert targets == list(range(1, n))  # every token after the first, once, in order
    for i, w in enumerate(windows):
        assert 1 <= w.n_inputs <= window
        assert w.start <= w.first_target - 1 < w.end - 1  # the first target's predictor is an input
        if i > 0:
            assert w.n_targets <= stride
            # context of the first target: all tokens before it, or at least window - stride + 1
            assert w.first_target - w.start >= min(w.first_target, window - stride + 1)


@given(n=st.integers(2, 500), window=st.integers(1, 64), count=st.integers(1, 5))
def test_shards_partition_windows(n: int, window: int, count: int) -> None:
    windows = plan_windows(n, window, max(1, window // 2))
    shards = [shard_windows(windows, i, count) for i in range(count)]
    assert sorted((w for s in shards for w in s), key=lambda w: w.start * n + w.end) == sorted(
        windows, key=lambda w: w.start * n + w.end
    )


def test_bad_shard() -> None:
    with pytest.raises(UsageError):
        shard_windows([], 2, 2)


def test_window_count_is_the_plans_length() -> None:
    from evalsuite.data.windows import window_count

    for n in range(2, 1200, 7):
        for window, stride in ((512, 256), (16, 16), (100, 1), (5, 3)):
            assert window_count(n, window, stride) == len(plan_windows(n, window, stride))
