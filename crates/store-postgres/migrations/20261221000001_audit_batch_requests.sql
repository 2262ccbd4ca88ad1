-- Issue #16: a 100,000-PC group reset wrote 200,000 `audit_targets` rows (one per member's own
-- event, one per member for the request's), a fifth of its time.
--
-- An event naming one device (its `targets` text one id, 36 characters) is found by this index
-- on that text, and gets no `audit_targets` row any more (those written before stay, and are
-- found either way).
CREATE INDEX audit_events_one_target ON audit_events (targets) WHERE char_length(targets) = 36;

-- A device's history also lists the request events (`batch.create`) of the batches it has an
-- action in: a group reset queued by the database names its members in the request's text
-- only. This index finds a batch's request event.
CREATE INDEX audit_events_batch_create ON audit_events (batch_id) WHERE action = 'batch.create';
