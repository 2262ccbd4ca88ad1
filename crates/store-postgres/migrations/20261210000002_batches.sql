-- Issue #14 item 6: bulk requests as records, listed newest first a page at a time (`seq`),
-- written by the transaction that starts each one. Earlier batches are taken from their
-- `batch.create` audit events, written in that same transaction: the kind is the first word
-- of its details, the target the details themselves, the devices its targets.
CREATE TABLE batches (
    seq          BIGSERIAL PRIMARY KEY,
    id           uuid NOT NULL UNIQUE,
    kind         TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    created_at   timestamptz NOT NULL,
    target       TEXT NOT NULL,
    devices      BIGINT NOT NULL
);
INSERT INTO batches (id, kind, requested_by, created_at, target, devices)
SELECT e.batch_id,
       split_part(e.details, ' ', 1),
       e.actor,
       e.at,
       e.details,
       (SELECT COUNT(*) FROM audit_targets t WHERE t.audit_seq = e.seq)
FROM audit_events e
WHERE e.action = 'batch.create' AND e.batch_id IS NOT NULL
ORDER BY e.seq;
CREATE INDEX actions_batch_seq ON actions (batch_id, seq);
