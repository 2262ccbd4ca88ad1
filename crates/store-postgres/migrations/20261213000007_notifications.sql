-- Issue #15 item 5: notifications. A webhook has a kind (raw signed JSON, a Teams or Slack
-- incoming webhook, or an e-mail address: core::webhook::WebhookKind); existing ones stay raw.
-- Batch events (batch.done / batch.failed / batch.stuck) are deliveries about a batch, unique per
-- (webhook, batch, event) like action events are per (webhook, action, event): the outbox row is
-- the watermark that makes each be told once per subscription. Action deliveries have no batch,
-- batch deliveries no action (NULLs never collide).
ALTER TABLE webhooks ADD COLUMN kind TEXT NOT NULL DEFAULT 'raw';
ALTER TABLE webhook_deliveries ADD COLUMN batch_id uuid;
CREATE UNIQUE INDEX webhook_deliveries_batch_once ON webhook_deliveries (webhook_id, batch_id, event);
