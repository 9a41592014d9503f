"""Rolling back one release: the previous release's code runs on the newest
schema (migrations only ever add, with defaults), as docs/rollback.md says."""

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from shared.repository import connect_repository, load_migrations

# PostgreSQL or S3 only: no RabbitMQ to vary, so not again in the RabbitMQ 4 lane.
pytestmark = [pytest.mark.integration, pytest.mark.single_broker]

ROOT = Path(__file__).resolve().parents[2]

# What the previous release's services do with the job table, end to end.
PREVIOUS_RELEASE_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, uuid
    import shared
    from shared.repository import connect_repository

    assert shared.__file__.startswith(sys.argv[2]), shared.__file__  # the old code, not ours

    async def main(url):
        repo = await connect_repository(url, migrate=True)  # finds nothing to do
        job_id = uuid.uuid4()
        await repo.create(job_id=job_id, input_path=f"inputs/{job_id}.mp4", pipeline="basic",
                          options={}, input_bytes=10)
        claimed = await repo.claim(job_id, owner="old-worker", lease_seconds=30)
        assert claimed is not None and claimed.attempts == 1
        done = await repo.complete(job_id, owner="old-worker", output_path=f"results/{job_id}.json")
        assert done is not None and done.status.value == "completed"
        assert (await repo.get(job_id)).output_path == f"results/{job_id}.json"
        await repo.close()
        print(job_id)

    asyncio.run(main(sys.argv[1]))
    """
)


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def previous_release_commit() -> str:
    """The commit before the newest migration was added: the code of release N-1."""
    if _git("rev-parse", "--is-shallow-repository") == "true":
        pytest.fail("this test needs the git history: clone without --depth")
    newest = load_migrations()[-1]
    path = next((ROOT / "shared/repository/migrations").glob(f"{newest.version:04d}_*.sql"))
    added = _git("log", "--diff-filter=A", "--format=%H", "-1", "--", str(path.relative_to(ROOT)))
    if not added:
        pytest.fail(f"{path.name} is not committed yet: commit it, then run this test")
    return f"{added}^"


async def test_the_previous_release_runs_on_the_newest_schema(database_url, tmp_path):
    head = await connect_repository(database_url, migrate=True)  # schema N
    await head.close()
    release = tmp_path / "previous"
    release.mkdir()
    archive = subprocess.run(
        ["git", "archive", previous_release_commit(), "shared"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(release)], input=archive, check=True)
    assert len(list((release / "shared/repository/migrations").glob("*.sql"))) < len(
        load_migrations()
    )

    ran = subprocess.run(
        [sys.executable, "-c", PREVIOUS_RELEASE_SCRIPT, database_url, str(release)],
        cwd=release,
        env={"PYTHONPATH": str(release), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    # and the newest code reads what the old one wrote
    repo = await connect_repository(database_url, migrate=False)
    job = await repo.get(uuid.UUID(ran.stdout.strip()))
    await repo.close()
    assert job is not None and job.status.value == "completed" and job.client_id == "anonymous"
