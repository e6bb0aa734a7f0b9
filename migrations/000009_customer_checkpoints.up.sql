-- Flat cost per event (issue 12): each customer's derived fold state as of the end of a second
-- (subscription.Checkpoint, JSON), so that a new event derives only the events after it. The
-- processor writes it with the read model, in the same transaction; a row of another fold
-- version is ignored and rewritten, and replay rewrites every row from scratch. Deleting rows is
-- always safe: the customer is then derived from its whole history once.
CREATE TABLE customer_checkpoints (
    livemode           boolean     NOT NULL,
    account            text        NOT NULL DEFAULT '',
    customer_id        text        NOT NULL,
    checkpoint_created bigint      NOT NULL,  -- T: the state holds every event with created <= T
    version            integer     NOT NULL,  -- subscription.CheckpointVersion
    state              jsonb       NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (livemode, account, customer_id)
);
