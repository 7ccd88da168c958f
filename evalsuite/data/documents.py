"""Per-document token streams (lm-evaluation-harness rolling loglikelihood).

Each row of a text is one document, tokenized on its own and preceded by a prefix token (the
tokenizer's BOS, else its EOS: lm-eval's `prefix_token_id`), so its first token is predicted from
the prefix alone. The documents are laid end to end in one array; `bounds` gives each document's
`[start, stop)` (start = its prefix token) for `windows.plan_documents`, which never lets a window
cross a document. Rows that tokenize to nothing are skipped (nothing to score, no words counted).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.cache import cache_root, discard, fresh_wanted, key_of, read_npz, warn, write_npz
from evalsuite.data.corpora import Text, lm_eval_words
from evalsuite.errors import ConfigError


def prefix_token(tokenizer: Any) -> int:
    """lm-eval's prefix token: BOS when the tokenizer has one, else EOS."""
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    raise ConfigError("per-document scoring needs a BOS or EOS token to start each document; the tokenizer "
                      "has neither: set documents = false")


def rows_key(rows: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for row in rows:
        data = row.encode("utf-8")
        h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def tokenize_documents(text: Text, tokenizer: Any, tokenizer_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids int64 [n], ends int64 [n], docs int64 [D, 3]): the documents end to end, each starting
    with the prefix token; `ends[t]` is token t's end offset in characters of its own row (0 for the
    prefix); `docs` rows are (row index, start, stop). Cached on disk."""
    prefix = prefix_token(tokenizer)
    key = key_of({"tokenizer": tokenizer_id, "rows": rows_key(text.rows), "prefix": prefix, "v": 2})
    path = cache_root() / "tokens" / f"docs-{key}.npz"
    cached = _cached(path)
    if cached is not None:
        return cached
    enc = tokenizer(list(text.rows), add_special_tokens=False, verbose=False, return_offsets_mapping=True)
    ids: list[int] = []
    ends: list[int] = []
    docs: list[tuple[int, int, int]] = []
    for row, (row_ids, offsets) in enumerate(zip(enc["input_ids"], enc["offset_mapping"], strict=True)):
        if not row_ids:
            continue
        start = len(ids)
        ids += [prefix, *row_ids]
        ends += [0, *(end for _, end in offsets)]
        docs.append((row, start, len(ids)))
    id_arr, end_arr = np.asarray(ids, dtype=np.int64), np.asarray(ends, dtype=np.int64)
    doc_arr = np.asarray(docs, dtype=np.int64).reshape(-1, 3)
    write_npz(path, {"ids": id_arr, "ends": end_arr, "docs": doc_arr})
    return id_arr, end_arr, doc_arr


def _cached(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A verified cache entry's arrays; a flipped, truncated or emptied one (or any under --fresh) is
    moved aside (one warning line when broken) and None returned: the caller rebuilds it."""
    if not path.exists():
        return None
    if not fresh_wanted(path):
        arrays = read_npz(path)
        if arrays is not None and {"ids", "ends", "docs"} <= set(arrays) and arrays["docs"].ndim == 2:
            with contextlib.suppress(OSError):
                os.utime(path)  # last use, for `evalsuite cache ls/clear`
            return (arrays["ids"].astype(np.int64), arrays["ends"].astype(np.int64),
                    arrays["docs"].astype(np.int64))
        warn(f"cache entry {path} is unreadable or fails its sha256; moved aside and rebuilt")
    discard(path)
    return None


def clipped_bounds(docs: np.ndarray, n_tokens: int) -> list[tuple[int, int]]:
    """Each document's `[start, stop)` within the first `n_tokens` tokens (max_tokens truncation)."""
    return [(int(s), min(int(e), n_tokens)) for _, s, e in docs if s < n_tokens]


def document_counts(text: Text, ends: np.ndarray, docs: np.ndarray, n_tokens: int) -> tuple[int, int, int]:
    """(words, UTF-8 bytes, documents scored) over the scored part of each document, counted as
    lm-eval counts a document (`re.split(r"\\s+", doc)`, `len(doc.encode())`), summed."""
    words = nbytes = count = 0
    for row, start, stop in docs:
        last = min(int(stop), n_tokens) - 1
        if last <= start:  # only the prefix (or nothing) survived truncation
            continue
        span = text.rows[int(row)][: int(ends[last])]
        words, nbytes, count = words + lm_eval_words(span), nbytes + len(span.encode("utf-8")), count + 1
    return words, nbytes, count

