"""
Progress bars: tqdm on a terminal, quiet in logs.

Off a terminal (a log file, CI, ``nohup``), a bar redraws at most once every ``LOG_INTERVAL_S`` seconds instead of
~10 times a second, so a training log holds a few lines per epoch, not thousands. ``TQDM_MININTERVAL`` (tqdm's own
environment override) still wins. Postfix updates never force a redraw (``refresh=False`` at every call site).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Iterable, Optional

from tqdm.auto import tqdm

#: seconds between redraws when stderr is not a terminal
LOG_INTERVAL_S = 60.0


def _is_notebook_bar() -> bool:
    """tqdm.auto picked the notebook widget: it redraws in place, so there is nothing to quieten."""
    from tqdm.autonotebook import tqdm as auto_base

    return auto_base.__module__ == "tqdm.notebook"


def progress_bar(iterable: Optional[Iterable] = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``, with a low refresh rate when stderr is not a terminal."""
    stream = kwargs.get("file") or sys.stderr
    interactive = hasattr(stream, "isatty") and stream.isatty()
    if not interactive and not _is_notebook_bar() and "TQDM_MININTERVAL" not in os.environ:
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
    return tqdm(iterable, **kwargs)


progress_bar.write = tqdm.write  # print a line without breaking a bar, as tqdm.write
