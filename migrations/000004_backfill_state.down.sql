DROP TABLE IF EXISTS backfill_state;
