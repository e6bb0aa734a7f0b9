-- The event store's payloads are compressed with lz4 rather than Postgres's default pglz. Real
-- Stripe events (3-6 KB, indented JSON) are over the 2 KB TOAST threshold, so every append
-- compresses each payload and every history load decompresses it; lz4 does both several times
-- faster (BenchmarkAppend in pkg/eventstore: 1,000 real events a transaction, pglz 935-1,174
-- events/s, lz4 1,505-1,986 in one run). Rows already stored keep pglz and stay readable: a
-- column reads either method. A server built without lz4 keeps pglz (the migration still
-- succeeds), and so does one before PostgreSQL 14, which has no per-column compression.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE stripe_events ALTER COLUMN payload SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    RAISE NOTICE 'stripe_events.payload keeps pglz: %', SQLERRM;
END
$$;
