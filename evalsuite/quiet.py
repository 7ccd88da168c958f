"""Silence third-party progress bars and info logs so the suite's own progress and table stay readable."""

from __future__ import annotations

import os


def quiet_transformers() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging

    logging.set_verbosity_error()
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") != "0":  # "0": rich progress on a terminal wants them
        logging.disable_progress_bar()


def quiet_datasets() -> None:
    """No `datasets` progress bars or info logs ("Generating train split: ...")."""
    import datasets

    datasets.utils.logging.set_verbosity_error()
    datasets.utils.logging.disable_progress_bar()
