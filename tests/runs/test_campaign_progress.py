"""Campaign progress: counts, ETA, log lines without a terminal."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labctl.runs.campaign_progress import CampaignProgress


def test_log_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    bar = CampaignProgress(4, stream=out, every_s=0.0, mode="log")
    bar.update(0, 2, 0)
    bar.update(1, 2, 1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "labctl campaign: 0 done, 2 running, 0 failed of 4"
    assert lines[1].startswith("labctl campaign: 1 done, 2 running, 1 failed of 4, about ")
    assert lines[1].endswith(" left")
    assert lines[-1].endswith("wall)")


def test_environment_picks_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCTL_PROGRESS", "off")
    assert CampaignProgress(4, stream=io.StringIO()).mode == "off"
    monkeypatch.setenv("LABCTL_PROGRESS", "auto")
    assert CampaignProgress(4, stream=io.StringIO()).mode == "log"  # not a terminal


def test_silent_when_disabled() -> None:
    out = io.StringIO()
    bar = CampaignProgress(4, stream=out, mode="off")
    bar.update(1, 1, 0)
    bar.close()
    assert out.getvalue() == ""


@given(total=st.integers(1, 10_000), finished=st.integers(0, 10_000),
       skipped=st.integers(0, 10_000))
def test_eta_counts_only_dies_finished_in_this_process(total: int, finished: int,
                                                      skipped: int) -> None:
    finished, skipped = min(finished, total), min(skipped, finished, total)
    bar = CampaignProgress(total, stream=io.StringIO(), mode=False)
    bar.skipped(skipped)
    eta = bar.eta_s(finished)
    if finished == skipped:
        assert eta is None  # no rate yet: no ETA rather than a wrong one
    else:
        assert eta is not None and eta >= 0
        assert (eta == 0) == (finished == total)
