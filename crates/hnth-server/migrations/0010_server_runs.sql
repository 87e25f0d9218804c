-- Each run of the server, with its last sign of life (written every few seconds): after a crash
-- the next start knows when the last run really stopped, and ends the sites' connections and
-- closes the meetings at that time, not at the restart's.
CREATE TABLE server_runs (
    id INTEGER PRIMARY KEY,
    started_at INTEGER NOT NULL,
    alive_at INTEGER NOT NULL,
    stopped_at INTEGER
);
