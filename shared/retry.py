"""What happens to a job after an error: decided here, and only here."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from shared.errors import PermanentError, TransientError

__all__ = ["Action", "Decision", "decide"]


class Action(enum.Enum):
    #: Back to pending, published to a retry tier.
    RETRY = "retry"
    #: Failed for good, a copy parked in the dead-letter queue.
    FAIL = "fail"


@dataclass(frozen=True)
class Decision:
    action: Action
    #: Error message to store on the job.
    message: str
    #: The retry tier (index into the settings' tiers) when retrying.
    tier: int | None = None


def decide(error: BaseException, *, attempts: int, max_attempts: int, tiers: int) -> Decision:
    """Retry or fail, for a job that raised ``error`` on claim number ``attempts``.

    Permanent errors fail at once. Transient errors, and errors nobody
    classified (a bug might be transient; the attempts bound it), go to the
    next tier while attempts are left: attempt 1 -> tier 0, attempt 2 ->
    tier 1, ..., the last tier again after that.
    """
    text = str(error) or type(error).__name__
    if isinstance(error, PermanentError):
        return Decision(Action.FAIL, text)
    if not isinstance(error, TransientError):
        text = (
            f"Internal error: {type(error).__name__}: {text}"
            if str(error)
            else f"Internal error: {text}"
        )
    if attempts >= max_attempts:
        return Decision(Action.FAIL, f"{text} (gave up after {attempts} attempts)")
    return Decision(Action.RETRY, text, tier=min(attempts - 1, tiers - 1))
