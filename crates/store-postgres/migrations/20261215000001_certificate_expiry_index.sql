-- The dashboard's and /readiness's counts of certificates expired and expiring (issue #16):
-- a range of this index instead of a scan of every device. A check-in never changes the column.
CREATE INDEX devices_cert_not_after ON devices (cert_not_after);
