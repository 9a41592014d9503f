import pytest

from shared.errors import DependencyUnavailable, JobTimedOut, PipelineNotFound, VideoUnreadable
from shared.retry import Action, decide

pytestmark = pytest.mark.unit


def test_permanent_errors_fail_at_once():
    d = decide(VideoUnreadable(), attempts=1, max_attempts=5, tiers=3)
    assert (d.action, d.message) == (Action.FAIL, "Unable to read video file")
    assert decide(PipelineNotFound("x"), attempts=1, max_attempts=5, tiers=3).action is Action.FAIL


@pytest.mark.parametrize("attempt,tier", [(1, 0), (2, 1), (3, 2), (4, 2)])
def test_transient_errors_walk_the_tiers(attempt, tier):
    d = decide(DependencyUnavailable("object store"), attempts=attempt, max_attempts=5, tiers=3)
    assert (d.action, d.tier) == (Action.RETRY, tier)


def test_attempts_used_up_fail_and_say_after_how_many():
    d = decide(JobTimedOut("too slow"), attempts=5, max_attempts=5, tiers=3)
    assert d.action is Action.FAIL
    assert d.message == "too slow (gave up after 5 attempts)"


def test_unclassified_errors_retry_as_internal_errors():
    d = decide(ZeroDivisionError("boom"), attempts=1, max_attempts=5, tiers=3)
    assert d.action is Action.RETRY
    assert d.message == "Internal error: ZeroDivisionError: boom"
