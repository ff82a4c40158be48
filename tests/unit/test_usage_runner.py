"""``HERO_USAGE_RUNNER`` picks what runs the usage worker: the plain loop unless told faust."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hero.config import HeroSettings


def test_the_plain_loop_is_the_default_and_faust_can_be_picked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HERO_USAGE_RUNNER", raising=False)
    assert HeroSettings().usage_runner == "plain"
    monkeypatch.setenv("HERO_USAGE_RUNNER", "faust")
    assert HeroSettings().usage_runner == "faust"


def test_an_unknown_runner_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERO_USAGE_RUNNER", "Faust ")  # the whole string, exactly
    with pytest.raises(ValidationError, match="usage_runner"):
        HeroSettings()
