#!/usr/bin/env python3
"""``start-notebook.py`` of the locally built Jupyter image: docker-stacks' contract, no conda.

docker-stacks' script runs ``jupyter lab`` (or ``DOCKER_STACKS_JUPYTER_CMD``) with the words of
``NOTEBOOK_ARGS`` and then its own arguments; GuildNet's operator relies on exactly that to pass
``--ServerApp.base_url``. The token comes from ``JUPYTER_TOKEN``, which jupyter_server reads
itself. ``exec`` keeps Jupyter the direct child of tini, so SIGTERM reaches it at once.
"""

from __future__ import annotations

import os
import shlex
import sys


def command(environ: dict[str, str], argv: list[str]) -> list[str]:
    """The Jupyter command line for this environment and these arguments."""
    sub = environ.get("DOCKER_STACKS_JUPYTER_CMD", "lab") or "lab"
    port = environ.get("JUPYTER_PORT", "8888") or "8888"
    cmd = ["jupyter", sub, "--ip=0.0.0.0", f"--port={port}", "--no-browser"]
    return cmd + shlex.split(environ.get("NOTEBOOK_ARGS", "")) + argv


if __name__ == "__main__":
    args = command(dict(os.environ), sys.argv[1:])
    os.execvp(args[0], args)
