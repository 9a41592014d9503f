-- Retention and erasure, and inputs read from the client's own bucket.
-- finished_at: when the job reached failed or completed (the retention
-- clocks start there; replay clears it). input_owned: false for a source=
-- input, which the service never deletes. input_deleted_at and
-- results_expired_at: when retention removed those objects (the row stays).
-- erase_requested: DELETE ?erase=true on a job that was still running; the
-- janitor erases it once it is failed or completed.
ALTER TABLE jobs
    ADD COLUMN IF NOT EXISTS finished_at        timestamptz,
    ADD COLUMN IF NOT EXISTS input_owned        boolean     NOT NULL DEFAULT true,
    ADD COLUMN IF NOT EXISTS input_deleted_at   timestamptz,
    ADD COLUMN IF NOT EXISTS results_expired_at timestamptz,
    ADD COLUMN IF NOT EXISTS erase_requested    boolean     NOT NULL DEFAULT false;

UPDATE jobs SET finished_at = updated_at
    WHERE status IN ('failed', 'completed') AND finished_at IS NULL;

-- The retention sweeps read finished jobs oldest first; erasure reads the flag.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_erase_requested ON jobs (updated_at) WHERE erase_requested;
