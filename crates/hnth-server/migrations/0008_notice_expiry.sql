-- P1, B2, B5: a notice that can no longer serve (its meeting has begun, or for an emergency
-- alert ended, before it could be sent) is not sent: it is marked expired, at this time.
ALTER TABLE notices ADD COLUMN expired_at INTEGER;
