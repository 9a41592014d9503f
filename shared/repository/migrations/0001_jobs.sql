-- The job table: the spec's columns by their exact names, then the
-- operational ones. Only the state machine (shared/jobs.py) writes status.
CREATE TYPE job_status AS ENUM ('pending', 'running', 'failed', 'completed');

CREATE TABLE jobs (
    job_id           uuid        PRIMARY KEY,
    status           job_status  NOT NULL DEFAULT 'pending',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    input_path       text        NOT NULL,
    output_path      text,
    error_message    text,
    progress         real        NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    pipeline         text        NOT NULL,
    options          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    lease_owner      text,
    lease_expires_at timestamptz,
    published_at     timestamptz,
    input_bytes      bigint      CHECK (input_bytes >= 0),
    -- A running job always has a lease; no other status has one.
    CONSTRAINT running_has_lease CHECK ((status = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CONSTRAINT completed_has_output CHECK (status <> 'completed' OR output_path IS NOT NULL)
);

-- The janitor's two sweeps.
CREATE INDEX jobs_running_lease ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_pending_outbox ON jobs (updated_at) WHERE status = 'pending';
