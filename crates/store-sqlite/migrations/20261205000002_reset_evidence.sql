-- Never falsely done (issue 11): an Autopilot Reset keeps the PC's status nodes as read just
-- before its Exec (core::action::ResetBaseline as text), and a device keeps its last reported
-- WinRE state (BitLocker DeviceEncryptionStatus bit 12) with the time it was read.
ALTER TABLE actions ADD COLUMN baseline TEXT;
ALTER TABLE devices ADD COLUMN winre_enabled INTEGER;
ALTER TABLE devices ADD COLUMN winre_checked_at INTEGER;
