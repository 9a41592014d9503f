-- Who owns a job, idempotent submits, tags, cancellation, and an events
-- outbox written in the same statement as each status change.
ALTER TABLE jobs
    ADD COLUMN client_id        text    NOT NULL DEFAULT 'anonymous',
    ADD COLUMN idempotency_key  text    CHECK (length(idempotency_key) BETWEEN 1 AND 64),
    ADD COLUMN request_hash     text,
    ADD COLUMN tag              text    CHECK (length(tag) <= 128),
    ADD COLUMN metadata         jsonb   NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;

-- One job per (client, key): two concurrent submits with one key give one job.
CREATE UNIQUE INDEX jobs_idempotency ON jobs (client_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Keyset pagination of a client's jobs, newest first.
CREATE INDEX jobs_client_listing ON jobs (client_id, created_at DESC, job_id DESC);

-- Each status change appends a row here in the same statement; the janitor
-- publishes them to the videoq.events exchange in id order.
CREATE TABLE job_events (
    event_id     bigserial   PRIMARY KEY,
    job_id       uuid        NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    status       job_status  NOT NULL,
    attempt      integer     NOT NULL,
    tag          text,
    occurred_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at timestamptz
);
CREATE INDEX job_events_unpublished ON job_events (event_id) WHERE published_at IS NULL;
