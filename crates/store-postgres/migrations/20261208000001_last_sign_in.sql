-- Issue #13 item 5: the last user sign-in a check-in reported (who, and when the server first saw
-- that user signed in), shown with the primary user in the console (core::session::decide).
ALTER TABLE devices ADD COLUMN last_sign_in_user TEXT;
ALTER TABLE devices ADD COLUMN last_sign_in_at TIMESTAMPTZ;
