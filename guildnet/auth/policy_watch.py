"""Re-read ``GUILDNET_POLICY`` when the file changes, so revoking a role needs no restart.

The file is checked every few seconds (its size, mtime and inode: editors that write a
new file and rename it are seen too). A changed file that parses replaces the policy at
once; one that does not is reported in one log line and the previous policy stays (a
typo must not lock every person out; the log says the edit did not apply). A file
that disappears leaves the last policy in force, also logged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from guildnet.auth.access import Access
from guildnet.auth.roles import load_policy

log = Logger(namespace="guildnet.auth")

CHECK_INTERVAL: Final = 5.0


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class PolicyWatcher(Service):
    """Keeps ``access.policy`` in step with the policy file."""

    def __init__(
        self, access: Access, path: Path, reactor: Any, interval: float = CHECK_INTERVAL
    ) -> None:
        self.access = access
        self.path = path
        self.reactor = reactor
        self.interval = interval
        self._stamp = _stamp(path)
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self.check)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()

    def check(self) -> None:
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        if stamp is None:
            log.error(
                "GUILDNET_POLICY: {path} is gone; the last policy read stays in force",
                path=str(self.path),
            )
            return
        try:
            policy = load_policy(self.path)
        except ValueError as e:
            log.error(
                "GUILDNET_POLICY: {problem}; the change is NOT applied, the previous policy "
                "stays in force",
                problem=str(e),
            )
            return
        self.access.policy = policy
        log.info(
            "GUILDNET_POLICY: reloaded {path} ({logins} logins, {tags} tags)",
            path=str(self.path),
            logins=len(policy.logins),
            tags=len(policy.tags),
        )
