"""Run the suite on the reactor GuildNet ships with (``twistd --reactor=guildnet``).

``GUILDNET_TEST_REACTOR=default`` keeps Twisted's default reactor instead, which
GuildNet must also work on (``make unit`` runs the proxy's tests both ways).
"""

from __future__ import annotations

import os
import sys

if os.environ.get("GUILDNET_TEST_REACTOR", "guildnet") == "guildnet":
    if "twisted.internet.reactor" in sys.modules:  # pragma: no cover - a plugin beat us
        raise RuntimeError("a reactor was installed before tests/conftest.py could install ours")
    from guildnet.reactor import install

    install()
