-- The backfill's state, kept by the processor: the checkpoints of interrupted runs
-- ('checkpoint.<hash of the run's parameters>') and the last successful scheduled run
-- ('scheduled.last_success'), each as one JSON document. Only processor/checkpoint.go writes it.
-- The scheduled run's one-at-a-time lock is a session advisory lock, not a row.
CREATE TABLE backfill_state (
    key        text        PRIMARY KEY,
    state      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
