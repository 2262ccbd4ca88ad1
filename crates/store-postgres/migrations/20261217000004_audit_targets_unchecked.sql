-- A target row names the event written in the same transaction (`insert_audits_in`, the bulk
-- queue's `INSERT … SELECT`s), and `audit_events` is append-only (its trigger refuses UPDATE and
-- DELETE), so the foreign key could only ever refuse a bug's insert. PostgreSQL checks it row by
-- row: 0.73 s of a 100,000-PC group reset (two 100,000-row target inserts). The primary key
-- (device_id, audit_seq) stays.
ALTER TABLE audit_targets DROP CONSTRAINT audit_targets_audit_seq_fkey;
