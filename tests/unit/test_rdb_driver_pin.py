"""guildnet.rdb.driver subclasses the rethinkdb driver's private Twisted classes: pin it.

A new driver release may fix (or move) what the wrapper patches; this fails so that someone
re-runs tests/integration/test_rdb_driver.py (which also shows whether the stock bugs remain)
before changing the pin.
"""

from __future__ import annotations

import configparser
import inspect
from pathlib import Path

from rethinkdb.twisted_net import net_twisted as nt
from rethinkdb.version import VERSION

from guildnet.rdb import driver

ROOT = Path(__file__).resolve().parents[2]


def test_installed_driver_is_the_pinned_release() -> None:
    assert VERSION.split("+")[0] == driver.DRIVER_VERSION


def test_setup_cfg_pins_the_same_release() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    requires = [line.strip() for line in cfg["options"]["install_requires"].splitlines()]
    assert f"rethinkdb=={driver.DRIVER_VERSION}" in requires


def test_the_internals_the_wrapper_overrides_still_look_the_same() -> None:
    # What the fixes rely on: the endpoint string (A, D, G) and the missing TLS.
    source = inspect.getsource(nt.ConnectionInstance._connectTimeout)
    assert '"tcp:%s:%d"' in source and "TODO: use ssl options" in source
    # B: connectionLost only marks the protocol closed.
    assert (
        inspect.getsource(nt.DatabaseProtocol.connectionLost).strip().endswith("self._open = False")
    )
    # C: the cursor keeps timed-out waiters in ``waiting``.
    assert "self.waiting.append(wait)" in inspect.getsource(nt.TwistedCursor.fetch_next)
    for name in ("_handleResponse", "close", "connect", "is_open"):
        assert hasattr(nt.ConnectionInstance, name)
    assert issubclass(driver.FixedInstance, nt.ConnectionInstance)
