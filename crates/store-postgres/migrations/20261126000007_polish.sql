-- The daily cap a bulk request asked for, kept with each of its later waves so that the worker
-- releases them under that cap (NULL: the request gave none; the global daily_cap applies).
ALTER TABLE batch_waves ADD COLUMN daily_cap BIGINT;
