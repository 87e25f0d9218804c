-- Art. 5: meeting registrations (bookings).
CREATE TABLE bookings (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    kind TEXT NOT NULL,
    host_unit_id INTEGER NOT NULL REFERENCES units(id),
    chair TEXT NOT NULL,
    host_site_id INTEGER NOT NULL REFERENCES sites(id),
    preparation_start INTEGER NOT NULL,
    official_start INTEGER NOT NULL,
    official_end INTEGER NOT NULL,
    emergency INTEGER NOT NULL DEFAULT 0,
    notice_number TEXT NOT NULL DEFAULT '',
    notice_date TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    reason TEXT,
    created_by INTEGER REFERENCES accounts(id),
    created_at INTEGER NOT NULL,
    submitted_at INTEGER,
    decided_by INTEGER REFERENCES accounts(id),
    decided_at INTEGER
);
CREATE INDEX bookings_time ON bookings(preparation_start, official_end);

CREATE TABLE booking_sites (
    booking_id INTEGER NOT NULL REFERENCES bookings(id) ON DELETE CASCADE,
    site_id INTEGER NOT NULL REFERENCES sites(id),
    PRIMARY KEY (booking_id, site_id)
);
