"""Helpers of the Ray tests: a time bound, and encoders that count and fail on cue.

They live in an importable module (not a test file) because Ray workers unpickle them by
reference. Counts and cues are files, the one state the driver and the actors share.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qrerank.embed.hashing import HashingEncoder


@contextlib.contextmanager
def time_bound(seconds: int, what: str) -> Iterator[None]:
    """Raise TimeoutError if the block runs longer than ``seconds`` (main thread only)."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"{what} took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class CountingEncoder(HashingEncoder):
    """HashingEncoder(dim) that logs each text it encodes to ``log``, and fails once on ``trigger``.

    On the first call whose texts hold ``trigger`` (no ``marker`` file yet) it writes the
    marker, then fails: ``fail="raise"`` raises RuntimeError (the job fails, the driver sees
    it), ``fail="exit"`` kills the worker process (Ray restarts the actor and retries the shard).
    """

    def __init__(self, dim: int, log: Path, trigger: str | None, marker: Path, fail: str) -> None:
        super().__init__(dim)
        self.log, self.trigger, self.marker, self.fail = log, trigger, marker, fail

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        if self.trigger is not None and self.trigger in texts and not self.marker.exists():
            self.marker.write_text("failed once\n")
            if self.fail == "exit":
                os._exit(1)
            raise RuntimeError(f"injected failure on the shard holding {self.trigger!r}")
        out = super().encode(texts)
        with self.log.open("a") as f:  # one line per text, appended after the work is done
            f.writelines(t.replace("\n", " ") + "\n" for t in texts)
        return out


@dataclass(frozen=True)
class CountingLoader:
    """A picklable ``load`` for RayEncoder: builds a CountingEncoder in each actor."""

    dim: int
    log: Path
    trigger: str | None = None
    marker: Path = Path(os.devnull)
    fail: str = "raise"

    def __call__(self) -> CountingEncoder:
        return CountingEncoder(self.dim, self.log, self.trigger, self.marker, self.fail)

    def encoded(self) -> list[str]:
        """Every text the actors have encoded so far, one entry per encoding."""
        return self.log.read_text().splitlines() if self.log.exists() else []
