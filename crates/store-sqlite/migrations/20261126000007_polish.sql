-- The daily cap a bulk request asked for, kept with each of its later waves so that the worker
-- releases them under that cap (NULL: the request gave none; the global daily_cap applies).
ALTER TABLE batch_waves ADD COLUMN daily_cap INTEGER;

-- Device lists sorted by serial (core::store::DeviceSort::Serial) page through this index.
CREATE INDEX devices_serial_sort ON devices ((COALESCE(serial, '')), id);
