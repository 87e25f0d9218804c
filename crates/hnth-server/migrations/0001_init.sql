-- Registry, accounts, sessions, audit trail and recorded violations.
-- Times are Unix seconds (UTC); the UI shows them in Asia/Ho_Chi_Minh.

CREATE TABLE units (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    -- provincial_office | party_office | district | department | line_provider
    kind TEXT NOT NULL
);

CREATE TABLE sites (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    unit_id INTEGER NOT NULL REFERENCES units(id),
    room TEXT NOT NULL DEFAULT '',
    address TEXT NOT NULL DEFAULT '',
    equipment TEXT NOT NULL DEFAULT '',
    room_rules TEXT NOT NULL DEFAULT '',
    -- The control center is itself a site of the registry, but is never dialed.
    is_control_center INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    site_id INTEGER REFERENCES sites(id),
    unit_id INTEGER REFERENCES units(id),
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

CREATE TABLE sessions (
    -- SHA-256 of the token the client holds, so a copy of the database opens no session.
    token_hash TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_account ON sessions(account_id);

CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor_id INTEGER,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    entity TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT
);

-- Rule R4: what the system saw that the regulation forbids.
CREATE TABLE violations (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    rule TEXT NOT NULL,
    account_id INTEGER,
    site_id INTEGER,
    detail TEXT NOT NULL
);

-- Live meetings opened from the console.
CREATE TABLE meetings (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    opened_by INTEGER REFERENCES accounts(id),
    opened_at INTEGER NOT NULL,
    closed_at INTEGER
);

CREATE TABLE meeting_sites (
    meeting_id INTEGER NOT NULL REFERENCES meetings(id),
    site_id INTEGER NOT NULL REFERENCES sites(id),
    connected_at INTEGER NOT NULL,
    disconnected_at INTEGER
);
