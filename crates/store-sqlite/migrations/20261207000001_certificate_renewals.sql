-- MDM client certificate renewals (core::enrollment::renewal): which certificate signed, which
-- was issued, and when the new one was first seen (until then the old one is still accepted).

CREATE TABLE certificate_renewals (
    enrollment_id  TEXT PRIMARY KEY NOT NULL REFERENCES enrollments (id),
    device_id      TEXT NOT NULL REFERENCES devices (id),
    old_thumbprint TEXT NOT NULL,
    old_not_after  INTEGER NOT NULL,
    new_thumbprint TEXT NOT NULL,
    new_not_after  INTEGER NOT NULL,
    replaces       TEXT NOT NULL,
    renewed_at     INTEGER NOT NULL,
    new_seen_at    INTEGER
);
CREATE INDEX certificate_renewals_device ON certificate_renewals (device_id, renewed_at);
-- Every check-in asks whether its device has an unseen renewal: keep that lookup tiny.
CREATE INDEX certificate_renewals_unseen ON certificate_renewals (device_id)
    WHERE new_seen_at IS NULL;
