-- The read model's rows are rewritten in place all the time (each event rewrites its customer's
-- and its user's row, each notification its user's state) and never change their keys. With
-- room left on each page, Postgres updates such a row on its own page without new index entries
-- (a HOT update) instead of writing every index again; the tables also bloat less. In a burst
-- drain of 80,000 events the two read-model upserts took 4.4-4.7 s of statement time instead of
-- 5.3-6.2 s (bench/drain.md). Pages already full keep their rows until they are next rewritten.
ALTER TABLE customer_entitlements SET (fillfactor = 70);
ALTER TABLE user_entitlements SET (fillfactor = 70);
ALTER TABLE notification_state SET (fillfactor = 70);
