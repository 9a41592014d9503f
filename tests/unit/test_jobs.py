import itertools

import pytest

from shared.jobs import TERMINAL, JobStatus, Transition

pytestmark = pytest.mark.unit

LEGAL = {
    (JobStatus.PENDING, JobStatus.RUNNING),
    (JobStatus.RUNNING, JobStatus.COMPLETED),
    (JobStatus.RUNNING, JobStatus.FAILED),
    (JobStatus.RUNNING, JobStatus.PENDING),
    (JobStatus.FAILED, JobStatus.PENDING),
    (JobStatus.PENDING, JobStatus.FAILED),  # a client cancels before any worker claims it
}


@pytest.mark.parametrize("source,target", sorted(itertools.product(JobStatus, JobStatus)))
def test_a_status_change_is_allowed_only_if_the_design_lists_it(source, target):
    assert Transition.allowed(source, target) == ((source, target) in LEGAL)


def test_completed_is_final():
    assert not any(t.source is JobStatus.COMPLETED for t in Transition)


def test_only_the_lease_owner_finishes_or_retries_a_running_job():
    owned = {t for t in Transition if t.needs_lease}
    assert owned == {Transition.COMPLETE, Transition.FAIL, Transition.RETRY, Transition.RELEASE}


def test_the_four_statuses_are_the_specs():
    assert [s.value for s in JobStatus] == ["pending", "running", "failed", "completed"]
    assert {JobStatus.FAILED, JobStatus.COMPLETED} == TERMINAL


def test_every_transition_is_its_own_member():
    # Two transitions between the same statuses must not collapse into aliases.
    assert len(list(Transition)) == len(Transition.__members__) == 9
