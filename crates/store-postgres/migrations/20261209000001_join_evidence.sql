-- Issue #13 item 2: what a device's join type rests on: the PC's own claim ('claimed') or an
-- Entra device token validated at enrollment ('entra_token'). Existing devices were all
-- enrolled on their claim.
ALTER TABLE devices ADD COLUMN join_evidence TEXT NOT NULL DEFAULT 'claimed';
