-- M2: the language of a site's app (the kiosk in its meeting room), set in the registry by the
-- control center (A3, audited), not by whoever is in the room. Vietnamese unless set otherwise.
ALTER TABLE sites ADD COLUMN language TEXT NOT NULL DEFAULT 'vi' CHECK (language IN ('vi', 'en'));
