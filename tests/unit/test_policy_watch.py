"""GUILDNET_POLICY is re-read when the file changes: real files, a fake clock."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from zope.interface import provider

from guildnet.auth.access import Access
from guildnet.auth.identity import Role
from guildnet.auth.policy_watch import PolicyWatcher
from guildnet.auth.roles import load_policy


def write(path: Path, text: str, bump: int) -> None:
    """Write and move the mtime on, so a same-size rewrite within one tick is seen too."""
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))


def test_edits_apply_and_bad_edits_keep_the_last_good_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    write(path, "logins:\n  bob@example.com: admin\n", 0)
    access = Access(load_policy(path), Role.ADMIN)
    clock = Clock()
    watcher = PolicyWatcher(access, path, clock, interval=5)
    lines: list[str] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        if event.get("log_namespace") == "guildnet.auth":
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    watcher.startService()
    try:
        role = lambda: access.policy.role_for("bob@example.com")  # noqa: E731
        assert role() is Role.ADMIN
        clock.advance(5)
        assert lines == []  # unchanged: nothing read, nothing logged

        write(path, "logins:\n  bob@example.com: user \n", 1)  # revoke admin
        clock.advance(5)
        assert role() is Role.USER
        assert "reloaded" in lines[-1] and "1 logins" in lines[-1]

        write(path, "logins:\n  bob@example.com: superuser\n", 2)
        clock.advance(5)
        assert role() is Role.USER, "a malformed edit changes nothing"
        assert "'superuser' is not a role" in lines[-1] and "NOT applied" in lines[-1]

        path.unlink()
        clock.advance(5)
        assert role() is Role.USER and "is gone" in lines[-1]

        write(path, "logins:\n  bob@example.com: none\n", 3)
        clock.advance(5)
        assert role() is Role.NONE
    finally:
        watcher.stopService()
        globalLogPublisher.removeObserver(observe)
    assert not clock.getDelayedCalls()
