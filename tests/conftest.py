"""Run the suite on the reactor GuildNet ships with (``twistd --reactor=guildnet``).

``GUILDNET_TEST_REACTOR=default`` keeps Twisted's default reactor instead, which
GuildNet must also work on (``make unit`` runs the proxy's tests both ways).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

# The API held to its OpenAPI description (see the end of this file): set before anything
# imports guildnet.http, which reads the variable once.
os.environ.setdefault("GUILDNET_VALIDATE_RESPONSES", "1")
_OWN_REPORT = "GUILDNET_VALIDATE_RESPONSES_REPORT" not in os.environ
if _OWN_REPORT:
    _fd, _report = tempfile.mkstemp(prefix="guildnet-openapi-", suffix=".jsonl")
    os.close(_fd)
    os.environ["GUILDNET_VALIDATE_RESPONSES_REPORT"] = _report

if os.environ.get("GUILDNET_TEST_REACTOR", "guildnet") == "guildnet":
    if "twisted.internet.reactor" in sys.modules:  # pragma: no cover - a plugin beat us
        raise RuntimeError("a reactor was installed before tests/conftest.py could install ours")
    from guildnet.reactor import install

    install()


# -- the API held to its OpenAPI description ---------------------------------------------------
# Every JSON body (and SSE event) the Host App sends during the tests is checked against
# /api/openapi.json (guildnet.http.openapi.check): in this process and in every Host App the
# tests start, which inherit the environment. A mismatch answers 500 and is logged; it is also
# written to a report file, and the session fails when that file is not empty, so a test that
# accepts a 500 cannot hide one.

from guildnet.http.errors import CHECK_RESPONSES, VALIDATE_ENV  # noqa: E402
from guildnet.http.openapi.check import REPORT_ENV  # noqa: E402

assert os.environ[VALIDATE_ENV] != "1" or CHECK_RESPONSES, "guildnet.http was imported too early"
assert REPORT_ENV in os.environ


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    report = Path(os.environ.get(REPORT_ENV, ""))
    if not report.is_file():
        return
    lines = report.read_text(encoding="utf-8").splitlines()
    if lines:
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        text = "\n".join(lines[:50])
        message = f"{len(lines)} response(s) disagreed with /api/openapi.json ({report}):\n{text}"
        if tr is not None:
            tr.write_sep("=", "OpenAPI response check", red=True)
            tr.write_line(message)
        else:  # pragma: no cover
            print(message)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if _OWN_REPORT:
        report.unlink(missing_ok=True)
