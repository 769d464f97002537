"""Logging for workflow steps: everything a step says, warnings and tracebacks included, goes to its log."""

from __future__ import annotations

import logging
import sys
import warnings


def log_to(path: str) -> logging.Logger:
    """Send logging, warnings and stderr of this process to ``path`` (appending); return the root logger."""
    handle = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    sys.stderr = handle
    logging.basicConfig(
        stream=handle, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    return logging.getLogger("layer")
