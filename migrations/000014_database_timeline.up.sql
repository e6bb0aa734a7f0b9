-- The Postgres timeline the processor last saw, one row. Promoting a standby, or restoring a
-- backup with point-in-time recovery, starts a new timeline. A processor that finds the
-- database on a timeline other than the one recorded here re-applies the stream's retained
-- window (STREAM_RETAIN_APPLIED) before it records the new one: the commits the old primary
-- acknowledged and the new one never received come back from the stream (the event store
-- ignores the ids it already holds).
CREATE TABLE database_timeline (
    one      boolean     PRIMARY KEY DEFAULT true CHECK (one),
    timeline bigint      NOT NULL,
    seen_at  timestamptz NOT NULL DEFAULT now()
);
