"""Service settings: one frozen dataclass, filled from defaults, ``QRERANK_*`` variables and flags.

This module is the only place that reads (or writes) the service's environment variables. Each
field ``name`` maps to ``QRERANK_<NAME>``, e.g. ``QRERANK_MAX_WAIT_MS=2``; tuples are
comma-separated, booleans accept 1/0, true/false, yes/no, on/off.

Every number is checked when the settings are built, so a bad value stops the server at start
with an :class:`~qrerank.errors.InputError` naming the setting, instead of serving nonsense
(``QRERANK_TAU=nan`` would score every document 0): floats must be finite and within
:data:`FLOAT_RANGES`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from qrerank.embed.runtime import Runtime
from qrerank.errors import InputError

ENV_PREFIX = "QRERANK_"

# name -> (low, high, low is exclusive): the range every float setting must lie in.
FLOAT_RANGES: dict[str, tuple[float, float, bool]] = {
    "alpha": (0.0, 1.0, False),
    "tau": (0.0, 1e6, True),  # the same upper bound as the /embed request field
    "max_wait_ms": (0.0, 10_000.0, False),  # waiting seconds for company defeats batching
    "request_timeout_s": (0.0, 86_400.0, True),
}


class LongDocs(StrEnum):
    """What to do with a document longer than ``max_doc_chars``."""

    TRUNCATE = "truncate"
    REJECT = "reject"  # answer 413


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Everything ``qrerank serve`` can be told.

    Batching: concurrent requests are queued (at most ``max_queue`` waiting requests, beyond
    that 429), and the encoder thread takes up to ``max_batch`` texts at a time, waiting at most
    ``max_wait_ms`` for more to arrive once the first one is in.
    """

    # Server
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    log_level: str = "info"
    # Model
    model: str | None = None  # None: the index's model, else all-MiniLM-L6-v2
    index: str | None = None
    head: str | None = None
    method: str = "hybrid"
    alpha: float = 0.5
    tau: float | None = None
    device: str | None = None
    runtime: Runtime | None = None  # None: the index's runtime, else torch (QRERANK_RUNTIME=onnx-int8)
    encode_batch_size: int = 64
    # Micro-batching
    max_batch: int = 512
    max_wait_ms: float = 2.0
    max_queue: int = 256
    request_timeout_s: float = 60.0
    # Limits
    max_documents: int = 1000
    max_doc_chars: int = 20_000
    max_query_chars: int = 4_000
    long_docs: LongDocs = LongDocs.TRUNCATE
    max_body_bytes: int = 8 * 1024 * 1024
    max_embed_texts: int = 512
    max_k: int = 1000
    # Security
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        positive = (
            "workers",
            "encode_batch_size",
            "max_batch",
            "max_queue",
            "max_documents",
            "max_doc_chars",
            "max_query_chars",
            "max_body_bytes",
            "max_embed_texts",
            "max_k",
        )
        for name in (*positive, "port"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputError(f"{name} must be an integer, got {value!r}")
        for name in positive:
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.port <= 65535:
            raise InputError(f"port must be in [0, 65535], got {self.port}")
        for name, (low, high, low_open) in FLOAT_RANGES.items():
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _check_float(name, value, low, high, low_open))
        object.__setattr__(self, "long_docs", _enum(LongDocs, self.long_docs, "long_docs"))
        if self.runtime is not None:
            object.__setattr__(self, "runtime", _enum(Runtime, self.runtime, "runtime"))
        if self.api_key == "":
            object.__setattr__(self, "api_key", None)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from three layers, each over the one before.

        Defaults, then ``QRERANK_*`` variables of ``env`` (default ``os.environ``), then
        ``overrides`` whose value is not None.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(str(f.type), raw, ENV_PREFIX + f.name.upper())
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError(f"unknown settings: {', '.join(sorted(unknown))}")
        return cls(**values)

    @classmethod
    def parse(cls, name: str, raw: str, source: str) -> Any:
        """``raw`` text for setting ``name`` as its type (e.g. a flag's value).

        ``source`` names where the text came from in the error (``--tau``).
        """
        types = {f.name: str(f.type) for f in fields(cls)}
        if name not in types:
            raise InputError(f"unknown setting {name!r}")
        return _parse(types[name], raw, source)

    def to_env(self) -> dict[str, str]:
        """``QRERANK_*`` variables that make :meth:`from_env` rebuild these settings (for workers)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, tuple):
                value = ",".join(value)
            out[ENV_PREFIX + f.name.upper()] = str(value)
        return out

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _check_float(name: str, value: Any, low: float, high: float, low_open: bool) -> float:
    """``value`` as a float if it is a finite number in the range, else InputError naming ``name``."""
    left = "(" if low_open else "["
    want = f"a finite number in {left}{low:g}, {high:g}]"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{name} must be {want}, got {value!r}")
    x = float(value)
    # NaN fails every comparison, so it must be caught explicitly; inf fails the upper bound.
    if not math.isfinite(x) or x > high or (x <= low if low_open else x < low):
        raise InputError(f"{name} must be {want}, got {value!r}")
    return x


def _enum(kind: type[StrEnum], value: Any, name: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        raise InputError(f"{name} must be one of {choices}, got {value!r}") from None


def _parse(type_name: str, raw: str, source: str) -> Any:
    try:
        if type_name.startswith("int"):
            return int(raw)
        if type_name.startswith("float"):
            x = float(raw)
            if not math.isfinite(x):  # float() takes "nan" and "inf"; no setting wants them
                raise ValueError(raw)
            return x
        if type_name.startswith("bool"):
            low = raw.strip().lower()
            if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return low in ("1", "true", "yes", "on")
        if type_name.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError:
        kind = "finite number" if type_name.startswith("float") else type_name.split(" ")[0]
        raise InputError(f"{source}={raw!r} is not a valid {kind}") from None
    return raw
