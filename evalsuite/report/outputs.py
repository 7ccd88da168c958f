"""The gate's output files, each complete or absent: results JSON, JUnit XML, Markdown and the CI step
summary (`$GITHUB_STEP_SUMMARY`, appended to). A write that fails (a full disk, a file size limit, a
vanished folder) is one line and exit 2; the outputs this run already wrote are removed again and the
step summary is cut back to its size before the run, so no output of a failed run looks complete.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from evalsuite.cache import atomic_write_text
from evalsuite.errors import EvalsuiteError
from evalsuite.gate import results


def write_gate_outputs(doc: dict[str, Any], checks: list[Any], json_out: Path | None, junit_out: Path | None,
                       markdown_out: Path | None, summary: str | None) -> None:
    from evalsuite.report import ci
    from evalsuite.report.junit import junit

    md = ci.markdown(doc, checks)
    written: list[Path] = []
    try:
        for path, render in ((json_out, None), (junit_out, lambda: junit(checks, doc)), (markdown_out, lambda: md)):
            if path is None:
                continue
            if render is None:
                results.write(path, doc)
            else:
                atomic_write_text(path, render())
            written.append(path)
        if summary:
            append_summary(Path(summary), md)
    except EvalsuiteError:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        raise


def append_summary(path: Path, text: str) -> None:
    """Append `text` whole or not at all: on failure the file is truncated back to its old size."""
    data = text.encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as err:
        raise EvalsuiteError(f"cannot write $GITHUB_STEP_SUMMARY {path}: {err.strerror}; point it at a writable "
                             "file") from None
    size = os.fstat(fd).st_size
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise EvalsuiteError(f"cannot write $GITHUB_STEP_SUMMARY {path}: {err.strerror}; free space or point it "
                             "at a writable file (the summary was left as it was)") from None
    finally:
        os.close(fd)
