-- The results document's size, written with `completed`, so the results
-- endpoint can send Content-Length without asking the object store first.
ALTER TABLE jobs
    ADD COLUMN output_bytes bigint CHECK (output_bytes >= 0);
