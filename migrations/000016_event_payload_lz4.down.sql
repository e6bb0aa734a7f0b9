-- Back to Postgres's default compression for new payloads; lz4 rows stay readable.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE stripe_events ALTER COLUMN payload SET COMPRESSION default';
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    RAISE NOTICE 'stripe_events.payload: %', SQLERRM;
END
$$;
