-- Issue #15 item 1: an admin pauses, resumes or cancels a batch. `state` is running, paused
-- or canceled; `steered_at`/`steered_by` record the last change (a resume shifts the waiting
-- waves by the time since the pause).
ALTER TABLE batches ADD COLUMN state TEXT NOT NULL DEFAULT 'running';
ALTER TABLE batches ADD COLUMN steered_at INTEGER;
ALTER TABLE batches ADD COLUMN steered_by TEXT;
