-- S1, S3 (Art. 9, 10): the technicians of each site; L2 (Art. 12): line provider contacts;
-- B2, P1, B5: notices sent by e-mail (the outbox), each with its due time and outcome.
CREATE TABLE technicians (
    id INTEGER PRIMARY KEY,
    site_id INTEGER NOT NULL REFERENCES sites(id),
    name TEXT NOT NULL,
    unit TEXT NOT NULL DEFAULT '',
    phone TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    trained INTEGER NOT NULL DEFAULT 0,
    trained_on TEXT NOT NULL DEFAULT '',
    active INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE provider_contacts (
    id INTEGER PRIMARY KEY,
    unit_id INTEGER NOT NULL REFERENCES units(id),
    name TEXT NOT NULL,
    phone TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    on_duty INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE notices (
    id INTEGER PRIMARY KEY,
    booking_id INTEGER REFERENCES bookings(id),
    -- provider_notice | technician_notice | reminder | emergency_alert | displaced
    kind TEXT NOT NULL,
    to_addr TEXT NOT NULL,
    to_name TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    with_invitation INTEGER NOT NULL DEFAULT 0,
    due_at INTEGER NOT NULL,
    sent_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX notices_due ON notices(sent_at, due_at);
