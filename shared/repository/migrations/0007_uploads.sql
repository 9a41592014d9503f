-- Direct uploads (shared/uploads.py): the client PUTs parts to the store
-- itself; this row is the api's record of one, until a job takes it over
-- (job_id) or it is aborted or expires (the janitor aborts and deletes it).
CREATE TABLE uploads (
    upload_id uuid PRIMARY KEY,
    client_id text NOT NULL,
    key text NOT NULL,
    store_upload_id text NOT NULL,
    size bigint NOT NULL CHECK (size > 0),
    part_size bigint NOT NULL CHECK (part_size > 0),
    state text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'completed', 'submitted')),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    job_id uuid REFERENCES jobs (job_id) ON DELETE CASCADE
);
-- The janitor's sweep: uploads past their expiry that no job took over.
CREATE INDEX uploads_expiring ON uploads (expires_at) WHERE state <> 'submitted';
