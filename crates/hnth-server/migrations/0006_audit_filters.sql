-- The audit page (A3, R4): violations keep their explanation in Vietnamese too (the UI's
-- language; `detail` stays English, for the API and the logs), and the filters by time and by
-- user find their rows without a full scan.
ALTER TABLE violations ADD COLUMN detail_vi TEXT;
CREATE INDEX audit_at ON audit(at);
CREATE INDEX audit_actor ON audit(actor, at);
CREATE INDEX violations_at ON violations(at);
