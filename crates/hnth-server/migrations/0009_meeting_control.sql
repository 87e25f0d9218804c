-- Art. 5-7: a meeting comes from its booking (or registers one, for an emergency opened at
-- once), and keeps who closed it and its course: the floor, the speak requests, the frame, the
-- technical parameters and the roll call (hnth_rules::meeting::Meeting as JSON), written at every
-- change so that a restart can restore it.
ALTER TABLE meetings ADD COLUMN booking_id INTEGER REFERENCES bookings(id);
ALTER TABLE meetings ADD COLUMN closed_by INTEGER REFERENCES accounts(id);
ALTER TABLE meetings ADD COLUMN state TEXT;
ALTER TABLE meetings ADD COLUMN state_at INTEGER;
CREATE INDEX meetings_booking ON meetings(booking_id);
