-- Enable/disable of webhooks (core::webhook::Webhook::notify_since): events of actions updated
-- before notify_since are never enqueued, so re-enabling a subscription does not replay what
-- ended while it was disabled. Existing subscriptions notify from their creation, as before.

ALTER TABLE webhooks ADD COLUMN notify_since INTEGER NOT NULL DEFAULT 0;
UPDATE webhooks SET notify_since = created_at;
