"""``twistd`` with the browser UI mounted: ``python -m tests.e2e.serve -n --pidfile= guildnet``.

Importing ``guildnet.http.ui_routes`` registers the UI routes on the shared router; once
HostAPI includes ``UIRoutes`` this import is a no-op and the daemon is exactly ``twistd``.
"""

from __future__ import annotations

from twisted.scripts.twistd import run

import guildnet.http.ui_routes  # noqa: F401  (registers /, /index.html, /assets/)

if __name__ == "__main__":
    run()
