"""Settings: defaults, QRERANK_* variables, flag overrides, validation, round trip."""

from __future__ import annotations

import pytest

from qrerank.errors import InputError
from qrerank.service.config import LongDocs, Settings


def test_defaults_bind_loopback_and_disable_auth_and_cors() -> None:
    s = Settings()
    assert s.host == "127.0.0.1" and s.port == 8080
    assert s.api_key is None and s.cors_origins == ()
    assert s.long_docs is LongDocs.TRUNCATE


def test_env_then_overrides() -> None:
    env = {
        "QRERANK_PORT": "9000",
        "QRERANK_MAX_WAIT_MS": "1.5",
        "QRERANK_CORS_ORIGINS": "http://a.test, http://b.test",
        "QRERANK_LONG_DOCS": "reject",
        "QRERANK_API_KEY": "k",
        "QRERANK_INDEX": "/tmp/idx",
        "UNRELATED": "x",
    }
    s = Settings.from_env(env, port=None, index="/other")
    assert s.port == 9000 and s.max_wait_ms == 1.5 and s.api_key == "k"
    assert s.cors_origins == ("http://a.test", "http://b.test")
    assert s.long_docs is LongDocs.REJECT
    assert s.index == "/other"  # a flag beats the variable; None means "not given"


def test_to_env_round_trip() -> None:
    s = Settings(port=0, model="hashing-64", cors_origins=("http://a.test",), tau=0.1, api_key="k")
    assert Settings.from_env(s.to_env()) == s


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"QRERANK_PORT": "eighty"}, "QRERANK_PORT"),
        ({"QRERANK_MAX_BATCH": "0"}, "max_batch"),
        ({"QRERANK_ALPHA": "1.5"}, "alpha"),
        ({"QRERANK_LONG_DOCS": "shrug"}, "long_docs"),
        ({"QRERANK_PORT": "70000"}, "port"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        Settings.from_env(env)


def test_unknown_override() -> None:
    with pytest.raises(InputError, match="nonsense"):
        Settings.from_env({}, nonsense=1)
