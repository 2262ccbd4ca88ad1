-- Issue #13: a device record is its MDM certificate; the hardware id, serial and Entra device id
-- are attributes two records may share (a clash the admin sees), never unique keys that fail a
-- check-in. The column takes the name the SQLite schema gives it.
ALTER TABLE devices DROP CONSTRAINT IF EXISTS devices_hw_dev_id_key;
ALTER TABLE devices RENAME COLUMN hw_dev_id TO hardware_id;

-- Looked up case-insensitively (store `devices_by_identity`, `core::enrollment::identity`).
CREATE INDEX devices_hardware_identity ON devices (lower(hardware_id));
CREATE INDEX devices_serial_identity ON devices (lower(serial));
CREATE INDEX devices_aad_identity ON devices (lower(aad_device_id));

-- Issue #13, replay: the last message taken from each device (SyncHdr SessionID and MsgID),
-- written by the session step that takes the next one (core::session::sequence).
ALTER TABLE devices ADD COLUMN dm_session_id TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN dm_msg_id BIGINT NOT NULL DEFAULT 0;
