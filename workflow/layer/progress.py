"""Progress bars for the long steps a person runs by hand (``layer synth``, ``validate``, ``import``).

A bar is drawn on a terminal only: ``tqdm(disable=None)`` turns itself off when stderr is not a TTY, so a
Snakemake log, a SLURM output file or a pipe gets no carriage-return noise, only the step's own messages.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "scan") -> Iterator[T]:
    """Iterate over ``items`` with a progress bar on stderr when it is a terminal, silently otherwise."""
    yield from tqdm(items, desc=desc, total=total, unit=unit, disable=None, file=sys.stderr, dynamic_ncols=True)
