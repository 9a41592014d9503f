"""The peer's api (``uvicorn bench.peer.app:app``): submit, status, results."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import FastAPI, Form, HTTPException, UploadFile
from fastapi.responses import Response
from psycopg.rows import dict_row

from bench.peer.common import BUCKET, SCHEMA, db, s3
from bench.peer.tasks import analyze

__all__ = ["app"]


@contextlib.asynccontextmanager
async def _lifespan(_: FastAPI) -> Any:
    with db().connection() as conn:
        conn.execute(SCHEMA)
    yield


app = FastAPI(title="peer", lifespan=_lifespan)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/video/submit", status_code=202)
def submit(
    file: UploadFile,
    pipeline: Annotated[str, Form()] = "noop",
    frame_stride: Annotated[int, Form(ge=1)] = 1,
) -> dict[str, str]:
    job_id = str(uuid4())
    key = f"inputs/{job_id}.mp4"
    s3().upload_fileobj(file.file, BUCKET, key)
    with db().connection() as conn:
        conn.execute(
            "INSERT INTO jobs (job_id, pipeline, frame_stride, input_key) VALUES (%s, %s, %s, %s)",
            (job_id, pipeline, frame_stride, key),
        )
    analyze.delay(job_id)
    return {"job_id": job_id}


def _row(job_id: UUID) -> dict[str, Any]:
    with db().connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT job_id, status, pipeline, error, attempts, created_at, updated_at,"
            " results_key FROM jobs WHERE job_id = %s",
            (job_id,),
        ).fetchone()
    if row is None:
        raise HTTPException(404, "job not found")
    return dict(row)


@app.get("/video/status/{job_id}")
def status(job_id: UUID) -> dict[str, Any]:
    row = _row(job_id)
    del row["results_key"]
    return row


@app.get("/video/results/{job_id}")
def results(job_id: UUID) -> Response:
    row = _row(job_id)
    if row["status"] != "completed":
        raise HTTPException(404, f"job is {row['status']}")
    body = s3().get_object(Bucket=BUCKET, Key=row["results_key"])["Body"].read()
    return Response(body, media_type="application/json")
