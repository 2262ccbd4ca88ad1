-- Issue #13 item 2: an admin may create an enrollment token that vouches for the Entra join of
-- the PCs enrolling with it (their join then rests on 'admin_token' evidence). Existing tokens
-- vouch for nothing: their PCs' join rests on the PCs' own claim.
ALTER TABLE enrollment_tokens ADD COLUMN vouches_entra_join BOOLEAN NOT NULL DEFAULT FALSE;
