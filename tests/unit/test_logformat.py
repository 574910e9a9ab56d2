"""guildnet.logformat: the same text as twistd's formatter, made cheaper."""

from __future__ import annotations

import io
import signal
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.logger import (
    FileLogObserver,
    LogLevel,
    formatEventAsClassicLogText,
    formatTime,
    timeFormatRFC3339,
)

from guildnet.logformat import ClassicLogFormat, twistd_log_observer


def twistd_format(event: dict[str, Any]) -> str | None:
    """What ``textFileLogObserver`` (twistd's default) writes for ``event``."""
    return formatEventAsClassicLogText(event, formatTime=lambda t: formatTime(t, timeFormatRFC3339))


def escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


texts = st.text(st.characters(blacklist_categories=["Cs"]), max_size=80)
times = st.one_of(st.none(), st.floats(min_value=0, max_value=4e9, allow_nan=False))
levels = st.sampled_from(list(LogLevel.iterconstants()))
namespaces = st.one_of(st.just("guildnet.access"), st.text(max_size=20))


@given(text=texts, when=times, level=levels, namespace=namespaces)
def test_access_events_format_exactly_as_twistd_does(
    text: str, when: float | None, level: Any, namespace: str
) -> None:
    event = {
        "log_format": escape(text),
        "guildnet_text": text,
        "log_time": when,
        "log_level": level,
        "log_namespace": namespace,
        "path": "/x",
    }
    assert ClassicLogFormat()(event) == twistd_format(event)


@given(text=texts, when=times, level=st.one_of(st.none(), levels), system=st.none() | texts)
def test_other_events_format_exactly_as_twistd_does(
    text: str, when: float | None, level: Any, system: str | None
) -> None:
    event: dict[str, Any] = {"log_format": text + " {n}", "n": 7, "log_time": when}
    if level is not None:
        event["log_level"] = level
    if system is not None:
        event["log_system"] = system
        event["guildnet_text"] = "ignored: log_system is set"
    assert ClassicLogFormat()(event) == twistd_format(event)


@given(st.lists(st.floats(min_value=0, max_value=4e9, allow_nan=False), max_size=20))
def test_cached_timestamp_is_right_for_any_sequence_of_times(moments: list[float]) -> None:
    fmt = ClassicLogFormat()
    for when in moments:
        assert fmt.time(when) == formatTime(when, timeFormatRFC3339)


def test_multiline_text_is_indented_like_twistd() -> None:
    event = {
        "log_format": "a\nb",
        "guildnet_text": "a\nb",
        "log_time": 1e9,
        "log_level": LogLevel.info,
        "log_namespace": "n",
    }
    assert ClassicLogFormat()(event) == twistd_format(event)
    assert "\n\tb" in (ClassicLogFormat()(event) or "")


def test_observer_follows_twistd_options(tmp_path: Path) -> None:
    assert twistd_log_observer(None) is None
    assert twistd_log_observer({"logger": "x.y", "nodaemon": True}) is None
    assert twistd_log_observer({"syslog": True}) is None
    assert twistd_log_observer({"logfile": "-", "nodaemon": False}) is None  # twistd refuses
    stdout = twistd_log_observer({"logfile": None, "nodaemon": True})
    assert isinstance(stdout, FileLogObserver)
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        path = tmp_path / "g.log"
        to_file = twistd_log_observer({"logfile": str(path), "nodaemon": True})
        assert isinstance(to_file, FileLogObserver)
        to_file(
            {
                "log_format": "hello",
                "guildnet_text": "hello",
                "log_time": 0.0,
                "log_level": LogLevel.info,
                "log_namespace": "t",
            }
        )
        assert path.read_text().endswith(" [t#info] hello\n")
        assert callable(signal.getsignal(signal.SIGUSR1)), "SIGUSR1 rotates, as in twistd"
        to_file._outFile.close()  # type: ignore[attr-defined]
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_formatter_is_what_the_observer_uses() -> None:
    out = io.StringIO()
    observer = FileLogObserver(out, ClassicLogFormat())
    observer({"log_format": "x {y}", "y": 1, "log_time": None})
    assert out.getvalue() == "- [-#-] x 1\n"
