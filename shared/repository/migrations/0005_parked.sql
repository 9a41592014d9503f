-- When a failed job's copy reached the dead-letter queue. NULL on a failed
-- job means its copy is still owed (the broker was away when it failed): the
-- janitor parks it. Jobs failed before this migration were parked then.
ALTER TABLE jobs ADD COLUMN parked_at timestamptz;
UPDATE jobs SET parked_at = updated_at WHERE status = 'failed';
CREATE INDEX jobs_unparked ON jobs (updated_at)
    WHERE status = 'failed' AND parked_at IS NULL;
