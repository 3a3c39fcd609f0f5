"""Connecting to Ray [ray]: a running cluster by address, or a private single-node one on loopback.

``--ray auto`` joins the cluster ``ray start`` left on this machine (or ``RAY_ADDRESS``) and
otherwise starts a local one bound to 127.0.0.1 with no dashboard; ``--ray ADDRESS``
(``HOST:PORT`` or ``ray://HOST:PORT``) joins that cluster and never starts one. Usage stats
are off unless the user turned them on: a qrerank job must not phone home.
"""

from __future__ import annotations

import logging
import os
from types import ModuleType

from qrerank._optional import require
from qrerank.errors import InputError

log = logging.getLogger(__name__)

EXTRA = "ray"
AUTO = "auto"
LOOPBACK = "127.0.0.1"
# Set before ray is imported: both are read at import/init time. setdefault, so a user who
# exports them otherwise keeps their choice.
_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def import_ray() -> ModuleType:
    """The ``ray`` module, with qrerank's environment defaults; MissingExtraError naming [ray]."""
    for key, value in _ENV.items():
        os.environ.setdefault(key, value)
    return require("ray", EXTRA)


def check_address(address: str) -> str:
    """``address`` if it can name a cluster (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``), else InputError."""
    address = address.strip()
    if address == AUTO:
        return address
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--ray must be 'auto', HOST:PORT or ray://HOST:PORT, got {address!r}")
    return address


def connect(address: str = AUTO, *, num_cpus: int | None = None) -> ModuleType:
    """Initialise Ray once per process (joining ``address``) and return the module.

    With ``auto`` and no cluster to join, a local single-node Ray starts on loopback with
    ``num_cpus`` (default: the CPUs this process may use); it ends with the process.
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray
    address = check_address(address)
    common = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address != AUTO:
        try:
            ray.init(address=address, **common)
        except ConnectionError as exc:
            raise InputError(f"cannot reach the Ray cluster at {address} ({exc})") from exc
        return ray
    try:
        ray.init(address=AUTO, **common)
        log.info("joined the running Ray cluster")
    except ConnectionError:  # no cluster on this machine: a private one, on loopback only
        cpus = num_cpus or len(os.sched_getaffinity(0))
        ray.init(address="local", num_cpus=cpus, _node_ip_address=LOOPBACK, **common)
        log.info("started a local Ray on %s with %d CPUs", LOOPBACK, cpus)
    return ray
