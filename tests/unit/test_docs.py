"""The README documents every configuration knob (it is the operator's manual)."""

from __future__ import annotations

from pathlib import Path

from guildnet.config import KNOBS

README = Path(__file__).resolve().parents[2] / "README.rst"


def test_readme_lists_every_knob_and_option() -> None:
    text = README.read_text()
    missing = [k.env for k in KNOBS if f"``{k.env}``" not in text]
    missing += [k.option for k in KNOBS if f"``--{k.option}``" not in text]
    assert missing == []


def test_readme_gives_the_two_commands() -> None:
    text = README.read_text()
    assert "make run" in text
    assert "make test" in text
