-- At most one active erasing action (an Autopilot Reset or a wipe) per device, enforced by the
-- database: two admins or two server processes requesting at the same moment both plan against
-- what they read, and only this index stops both plans from committing. The request path
-- (core::action::request) re-plans when it refuses an insert, and then blocks as usual.
-- "Active" are the states in which the action may still reach or is on the device; blocked
-- actions never reach a device and may sit beside an active one.
--
-- Rows that already break the rule (only a race before this index could have made them) must
-- not stop the upgrade. Per device the most advanced active one is kept (in_progress, then
-- acknowledged, sent, pending, requested; the oldest on a tie: it is the one the device may be
-- acting on) and the others are expired with a timeline note and their queued commands dropped,
-- as the expiry tick would have done.

UPDATE commands SET state = 'failed'
WHERE state = 'queued' AND action_id IN (
    SELECT id FROM (
        SELECT id, ROW_NUMBER() OVER (
            PARTITION BY device_id
            ORDER BY CASE state WHEN 'in_progress' THEN 0 WHEN 'acknowledged' THEN 1
                                WHEN 'sent' THEN 2 WHEN 'pending' THEN 3 ELSE 4 END,
                     created_at, seq
        ) AS rank
        FROM actions
        WHERE state IN ('requested', 'pending', 'sent', 'acknowledged', 'in_progress')
          AND kind IN ('autopilot_reset', 'wipe', 'wipe_keep_provisioning',
                       'wipe_keep_user_data', 'wipe_protected')
    ) AS ranked WHERE rank > 1
);

UPDATE actions
SET state = 'expired',
    updated_at = (extract(epoch FROM now()) * 1000000)::BIGINT,
    timeline = (timeline::jsonb || jsonb_build_array(jsonb_build_object(
        'state', 'expired',
        'at', (extract(epoch FROM now()) * 1000000)::BIGINT,
        'note', 'expired on upgrade: another erasing action was already active on this device')))::TEXT
WHERE id IN (
    SELECT id FROM (
        SELECT id, ROW_NUMBER() OVER (
            PARTITION BY device_id
            ORDER BY CASE state WHEN 'in_progress' THEN 0 WHEN 'acknowledged' THEN 1
                                WHEN 'sent' THEN 2 WHEN 'pending' THEN 3 ELSE 4 END,
                     created_at, seq
        ) AS rank
        FROM actions
        WHERE state IN ('requested', 'pending', 'sent', 'acknowledged', 'in_progress')
          AND kind IN ('autopilot_reset', 'wipe', 'wipe_keep_provisioning',
                       'wipe_keep_user_data', 'wipe_protected')
    ) AS ranked WHERE rank > 1
);

CREATE UNIQUE INDEX actions_one_active_erasing ON actions (device_id)
WHERE state IN ('requested', 'pending', 'sent', 'acknowledged', 'in_progress')
  AND kind IN ('autopilot_reset', 'wipe', 'wipe_keep_provisioning',
               'wipe_keep_user_data', 'wipe_protected');
