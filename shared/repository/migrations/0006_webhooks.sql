-- Signed webhooks (docs/webhooks.md): where a job's end is announced, and
-- the log of every attempt to announce it.
ALTER TABLE jobs ADD COLUMN callback_url text CHECK (length(callback_url) <= 2048);

-- One row per delivery attempt, written by the notifier before it settles
-- the message. Erasing a job (deleting its row) removes its log with it.
CREATE TABLE webhook_deliveries (
    attempt_id      bigserial   PRIMARY KEY,
    job_id          uuid        NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    webhook_id      text        NOT NULL,
    type            text        NOT NULL,
    attempt         integer     NOT NULL,
    status_code     integer,
    error           text,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    next_attempt_at timestamptz
);
CREATE INDEX webhook_deliveries_job ON webhook_deliveries (job_id, attempt_id);
