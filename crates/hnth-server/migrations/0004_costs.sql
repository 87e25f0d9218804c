-- F1 (Art. 8): cost entries per meeting, each with its payer.
CREATE TABLE costs (
    id INTEGER PRIMARY KEY,
    booking_id INTEGER NOT NULL REFERENCES bookings(id),
    -- lines | services | decoration | other
    category TEXT NOT NULL,
    -- provincial_office | host_unit
    payer TEXT NOT NULL,
    amount_vnd INTEGER NOT NULL CHECK (amount_vnd >= 0),
    description TEXT NOT NULL DEFAULT '',
    created_by INTEGER REFERENCES accounts(id),
    created_at INTEGER NOT NULL
);
CREATE INDEX costs_booking ON costs(booking_id);
