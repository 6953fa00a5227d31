"""Shows the kit's progress messages (``log.info``) in command lines and notebooks.

Python prints nothing below WARNING until an application configures logging, so messages such
as "converting ... (once)" never reached users. `configure_logging`, called when t2lib is
imported, gives the ``t2lib`` and ``fishfarm`` loggers one handler that prints INFO and above
to stderr. An application that configures logging itself keeps control, and nothing prints
twice: with a handler on the root logger, or on those loggers (a ``NullHandler`` included),
the kit adds none; and if the root logger gets a handler later, the kit's handler falls silent.
"""
from __future__ import annotations

import logging
import sys

KIT_LOGGERS = ("t2lib", "fishfarm")
FORMAT = "%(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (Jupyter replaces it after start-up)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _root_unconfigured(record: logging.LogRecord) -> bool:
    return not logging.getLogger().handlers


def configure_logging(level: int = logging.INFO) -> list[str]:
    """Lets the kit's INFO messages reach the user unless logging is configured already.

    Args:
        level: the lowest level printed (INFO: progress such as "loading SVD cache ...").

    Returns:
        The names of the loggers given a handler (none on a second call, or where the
        application configured logging).
    """
    if logging.getLogger().handlers:
        return []
    configured = []
    for name in KIT_LOGGERS:
        logger = logging.getLogger(name)
        if logger.handlers:
            continue
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(_root_unconfigured)
        logger.addHandler(handler)
        if logger.level == logging.NOTSET:
            logger.setLevel(level)
        configured.append(name)
    return configured
