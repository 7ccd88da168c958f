"""The model's tokenizer, loaded on first use.

Importing transformers imports torch (`transformers.configuration_utils` -> `modeling_rope_utils`),
about 2 s of a warm ORT-only run that never needs either: its token streams come from the token cache
(`data/corpora.py`), and the vocabulary size it checks the logits against can be read from
`tokenizer.json` with the `tokenizers` library alone (what transformers' fast tokenizer wraps:
`len(tokenizer)` is that file's vocabulary with its added tokens; `tests/test_lazy_tokenizer.py` holds
them equal). Anything else (encoding, special tokens) loads transformers' `AutoTokenizer` as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalsuite.quiet import quiet_transformers


class LazyTokenizer:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._tokenizer: Any = None
        self._size: int | None = None

    @property
    def loaded(self) -> bool:
        return self._tokenizer is not None

    def load(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            quiet_transformers()
            self._tokenizer = AutoTokenizer.from_pretrained(self.folder)
        return self._tokenizer

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.load()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.load(), name)

    def __len__(self) -> int:
        if self._tokenizer is not None:
            return len(self._tokenizer)
        if self._size is None:
            file = self.folder / "tokenizer.json"
            if not file.is_file():
                return len(self.load())
            from tokenizers import Tokenizer

            self._size = int(Tokenizer.from_file(str(file)).get_vocab_size(with_added_tokens=True))
        return self._size
