-- PostgreSQL's own types instead of the shapes shared with SQLite: ids become uuid, instants
-- timestamptz, the JSON documents (enrollment context, action timeline, group filter) jsonb.
-- Existing rows are converted in place. Instants were BIGINT microseconds since the Unix epoch;
-- timestamptz keeps microseconds, and the conversion below is integer arithmetic, so every
-- value comes back exactly. Kept as text: the webhook payload (signed as the exact bytes sent),
-- the space- and comma-separated id lists (audit_events.targets, batch_waves.devices) and the
-- text forms the core defines (reset baseline, recurrence, secret hashes).

CREATE FUNCTION redeploy_micros_to_timestamptz(micros BIGINT) RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT 'epoch'::timestamptz + (micros / 1000000) * interval '1 second'
                                + (micros % 1000000) * interval '1 microsecond'
$$;

-- A referencing column and the key it references must change type together: drop the foreign
-- keys first, put them back (same names, same ON DELETE) at the end.
ALTER TABLE enrollments DROP CONSTRAINT enrollments_device_id_fkey;
ALTER TABLE actions DROP CONSTRAINT actions_device_id_fkey;
ALTER TABLE commands DROP CONSTRAINT commands_device_id_fkey;
ALTER TABLE commands DROP CONSTRAINT commands_action_id_fkey;
ALTER TABLE inventory DROP CONSTRAINT inventory_device_id_fkey;
ALTER TABLE group_members DROP CONSTRAINT group_members_group_id_fkey;
ALTER TABLE group_members DROP CONSTRAINT group_members_device_id_fkey;
ALTER TABLE schedules DROP CONSTRAINT schedules_group_id_fkey;
ALTER TABLE console_sessions DROP CONSTRAINT console_sessions_token_id_fkey;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_webhook_id_fkey;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_action_id_fkey;

ALTER TABLE devices
    ALTER COLUMN id TYPE uuid USING id::uuid,
    ALTER COLUMN last_seen TYPE timestamptz USING redeploy_micros_to_timestamptz(last_seen),
    ALTER COLUMN cert_not_after TYPE timestamptz
        USING redeploy_micros_to_timestamptz(cert_not_after),
    ALTER COLUMN winre_checked_at TYPE timestamptz
        USING redeploy_micros_to_timestamptz(winre_checked_at),
    ALTER COLUMN enrolled_at TYPE timestamptz USING redeploy_micros_to_timestamptz(enrolled_at),
    ALTER COLUMN unenrolled_at TYPE timestamptz
        USING redeploy_micros_to_timestamptz(unenrolled_at);

ALTER TABLE enrollments
    ALTER COLUMN id TYPE uuid USING id::uuid,
    ALTER COLUMN device_id TYPE uuid USING device_id::uuid,
    ALTER COLUMN replaced_by TYPE uuid USING replaced_by::uuid,
    ALTER COLUMN context TYPE jsonb USING context::jsonb,
    ALTER COLUMN cert_not_after TYPE timestamptz
        USING redeploy_micros_to_timestamptz(cert_not_after),
    ALTER COLUMN created_at TYPE timestamptz USING redeploy_micros_to_timestamptz(created_at);

ALTER TABLE enrollment_tokens
    ALTER COLUMN id TYPE uuid USING id::uuid,
    ALTER COLUMN expires_at TYPE timestamptz USING redeploy_micros_to_timestamptz(expires_at),
    ALTER COLUMN created_at TYPE timestamptz USING redeploy_micros_to_timestamptz(created_at);

ALTER TABLE api_tokens
    ALTER COLUMN id TYPE uuid USING id::uuid,
    ALTER COLUMN created_at TYPE timestamptz USING redeploy_micros_to_timestamptz(created_at),
    ALTER COLUMN revoked_at TYPE timestamptz USING redeploy_micros_to_timestamptz(revoked_at);

ALTER TABLE actions
    ALTER COLUMN id TYPE uuid USING id::uuid,
    ALTER COLUMN device_id TYPE uuid USING device_id::uuid,
    ALTER COLUMN batch_id TYPE uuid USING batch_id::uuid,
    ALTER COLUMN created_at TYPE timestamptz USING redeploy_micros_to_timestamptz(created_at),
    ALTER COLUMN updated_at TYPE timestamptz USING redeploy_micros_to_timestamptz(updated_at),
    ALTER COLUMN timeline TYPE jsonb USING timeline::jsonb;

ALTER TABLE commands
    ALTER COLUMN id TYPE uuid USING id::uuid,
    ALTER COLUMN device_id TYPE uuid USING device_id::uuid,
    ALTER COLUMN action_id TYPE uuid USING action_id::uuid,
    ALTER COLUMN created_at TYPE timestamptz USING redeploy_micros_to_timestamptz(created_at),
    ALTER COLUMN sent_at TYPE timestamptz USING redeploy_micros_to_timestamptz(sent_at),
    ALTER COLUMN answered_at TYPE timestamptz USING redeploy_micros_to_timestamptz(answered_at);

ALTER TABLE inventory
    ALTER COLUMN device_id TYPE uuid USING device_id::uuid,
    ALTER COLUMN at TYPE timestamptz USING redeploy_micros_to_timestamptz(at);

ALTER TABLE audit_events
    ALTER COLUMN at TYPE timestamptz USING redeploy_micros_to_timestamptz(at),
    ALTER COLUMN batch_id TYPE uuid USING batch_id::uuid;

ALTER TABLE audit_targets
    ALTER COLUMN device_id TYPE uuid USING device_id::uuid;

ALTER TABLE device_groups
    ALTER COLUMN id TYPE uuid USING id::uuid,
    ALTER COLUMN filter TYPE jsonb USING filter::jsonb,
    ALTER COLUMN created_at TYPE timestamptz USING redeploy_micros_to_timestamptz(created_at);

ALTER TABLE group_members
    ALTER COLUMN group_id TYPE uuid USING group_id::uuid,
    ALTER COLUMN device_id TYPE uuid USING device_id::uuid;

ALTER TABLE batch_waves
    ALTER COLUMN batch_id TYPE uuid USING batch_id::uuid,
    ALTER COLUMN due_at TYPE timestamptz USING redeploy_micros_to_timestamptz(due_at),
    ALTER COLUMN released_at TYPE timestamptz USING redeploy_micros_to_timestamptz(released_at);

ALTER TABLE schedules
    ALTER COLUMN id TYPE uuid USING id::uuid,
    ALTER COLUMN group_id TYPE uuid USING group_id::uuid,
    ALTER COLUMN next_run TYPE timestamptz USING redeploy_micros_to_timestamptz(next_run),
    ALTER COLUMN last_run TYPE timestamptz USING redeploy_micros_to_timestamptz(last_run);

ALTER TABLE batch_windows
    ALTER COLUMN batch_id TYPE uuid USING batch_id::uuid;

ALTER TABLE console_sessions
    ALTER COLUMN token_id TYPE uuid USING token_id::uuid,
    ALTER COLUMN created_at TYPE timestamptz USING redeploy_micros_to_timestamptz(created_at),
    ALTER COLUMN expires_at TYPE timestamptz USING redeploy_micros_to_timestamptz(expires_at);

-- notify_since had DEFAULT 0 (migration 20261126000011), which has no timestamptz cast; every
-- insert names the column, so it keeps no default.
ALTER TABLE webhooks
    ALTER COLUMN notify_since DROP DEFAULT,
    ALTER COLUMN id TYPE uuid USING id::uuid,
    ALTER COLUMN created_at TYPE timestamptz USING redeploy_micros_to_timestamptz(created_at),
    ALTER COLUMN notify_since TYPE timestamptz
        USING redeploy_micros_to_timestamptz(notify_since);

ALTER TABLE webhook_deliveries
    ALTER COLUMN id TYPE uuid USING id::uuid,
    ALTER COLUMN webhook_id TYPE uuid USING webhook_id::uuid,
    ALTER COLUMN action_id TYPE uuid USING action_id::uuid,
    ALTER COLUMN next_attempt_at TYPE timestamptz
        USING redeploy_micros_to_timestamptz(next_attempt_at),
    ALTER COLUMN delivered_at TYPE timestamptz USING redeploy_micros_to_timestamptz(delivered_at),
    ALTER COLUMN created_at TYPE timestamptz USING redeploy_micros_to_timestamptz(created_at);

ALTER TABLE enrollments ADD CONSTRAINT enrollments_device_id_fkey
    FOREIGN KEY (device_id) REFERENCES devices (id);
ALTER TABLE actions ADD CONSTRAINT actions_device_id_fkey
    FOREIGN KEY (device_id) REFERENCES devices (id);
ALTER TABLE commands ADD CONSTRAINT commands_device_id_fkey
    FOREIGN KEY (device_id) REFERENCES devices (id);
ALTER TABLE commands ADD CONSTRAINT commands_action_id_fkey
    FOREIGN KEY (action_id) REFERENCES actions (id);
ALTER TABLE inventory ADD CONSTRAINT inventory_device_id_fkey
    FOREIGN KEY (device_id) REFERENCES devices (id);
ALTER TABLE group_members ADD CONSTRAINT group_members_group_id_fkey
    FOREIGN KEY (group_id) REFERENCES device_groups (id) ON DELETE CASCADE;
ALTER TABLE group_members ADD CONSTRAINT group_members_device_id_fkey
    FOREIGN KEY (device_id) REFERENCES devices (id);
ALTER TABLE schedules ADD CONSTRAINT schedules_group_id_fkey
    FOREIGN KEY (group_id) REFERENCES device_groups (id) ON DELETE CASCADE;
ALTER TABLE console_sessions ADD CONSTRAINT console_sessions_token_id_fkey
    FOREIGN KEY (token_id) REFERENCES api_tokens (id);
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_webhook_id_fkey
    FOREIGN KEY (webhook_id) REFERENCES webhooks (id) ON DELETE CASCADE;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_action_id_fkey
    FOREIGN KEY (action_id) REFERENCES actions (id);

DROP FUNCTION redeploy_micros_to_timestamptz(BIGINT);
