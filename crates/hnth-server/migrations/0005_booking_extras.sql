-- L2 (Art. 12): the line provider's on-duty technician chosen for each meeting.
ALTER TABLE bookings ADD COLUMN on_duty_contact_id INTEGER REFERENCES provider_contacts(id);

-- B1 (Art. 5.1): the written notice (công văn) of a registration, as uploaded (PDF only, at most
-- 5 MiB, checked by the server). One file per booking and kind.
CREATE TABLE booking_files (
    booking_id INTEGER NOT NULL REFERENCES bookings(id) ON DELETE CASCADE,
    -- notice
    kind TEXT NOT NULL,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    data BLOB NOT NULL,
    uploaded_by INTEGER REFERENCES accounts(id),
    uploaded_at INTEGER NOT NULL,
    PRIMARY KEY (booking_id, kind)
);
