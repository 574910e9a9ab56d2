"""twistd's text log, formatted for a process that writes a line per proxied request.

twistd formats each event with ``formatEventAsClassicLogText``; its timestamp alone
(a time zone object, a ``datetime`` and ``strftime`` per event) and the generic format
machinery cost a good share of a small proxied request. :class:`ClassicLogFormat`
gives byte-for-byte the same text (a property test compares them) with the timestamp
cached per second and a direct path for events that carry their finished text
(``guildnet_text``, set by the access log). :func:`twistd_log_observer` builds the
observer twistd itself would build from its ``--logfile``/``--nodaemon`` options,
with this formatter; twistd uses it when set on the application.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    formatEventAsClassicLogText,
    formatTime,
    timeFormatRFC3339,
)
from twisted.python import logfile


class ClassicLogFormat:
    """``formatEventAsClassicLogText`` with the RFC 3339 timestamp made once a second."""

    def __init__(self) -> None:
        self._second: int | None = None
        self._stamp = "-"

    def time(self, when: float | None) -> str:
        if when is None:
            return "-"
        second = int(when // 1)
        if second != self._second:
            # The format has no sub-second field: every moment of a second prints alike.
            self._stamp = formatTime(when, timeFormatRFC3339)
            self._second = second
        return self._stamp

    def __call__(self, event: LogEvent) -> str | None:
        text = event.get("guildnet_text")
        level = event.get("log_level")
        namespace = event.get("log_namespace", "-")
        if (
            type(text) is not str
            or not text
            or level is None
            or type(namespace) is not str
            or "log_system" in event
            or "log_failure" in event
            or "log_flattened" in event
        ):
            return formatEventAsClassicLogText(event, formatTime=self.time)
        line = f"{self.time(event.get('log_time'))} [{namespace}#{level.name}] {text}"
        return line.replace("\n", "\n\t") + "\n"


def twistd_log_observer(twistd_options: Any) -> ILogObserver | None:
    """The text-file observer twistd would make from ``twistd_options``, formatted by
    :class:`ClassicLogFormat`; None where twistd is told to log elsewhere (``--logger``,
    ``--syslog``), which then stays as twistd decides."""
    try:
        if twistd_options.get("logger") or twistd_options.get("syslog"):
            return None
        name = twistd_options.get("logfile")
        nodaemon = bool(twistd_options.get("nodaemon"))
    except AttributeError:
        return None
    if name == "-" and not nodaemon:
        return None  # twistd refuses this itself, with its own message
    out: Any
    if name == "-" or (nodaemon and not name):
        out = sys.stdout
    else:
        log_file = logfile.LogFile.fromFullPath(name or "twistd.log")
        out = log_file
        if not signal.getsignal(signal.SIGUSR1):
            # As twistd does: SIGUSR1 rotates the log file.
            def rotate(signum: int, frame: Any) -> None:
                from twisted.internet import reactor

                reactor.callFromThread(log_file.rotate)  # type: ignore[attr-defined]

            signal.signal(signal.SIGUSR1, rotate)
    return FileLogObserver(out, ClassicLogFormat())


__all__ = ["ClassicLogFormat", "twistd_log_observer"]
