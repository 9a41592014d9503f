-- Counting a client's pending and running jobs (the per-client in-flight
-- limit at submit) without reading its whole history.
CREATE INDEX jobs_client_in_flight ON jobs (client_id)
    WHERE status IN ('pending', 'running');
