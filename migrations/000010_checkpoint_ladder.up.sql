-- A ladder of checkpoints per customer (issue 12, "an event older than the checkpoint re-derives
-- from the last checkpoint before it"): the newest, plus older rungs spaced geometrically back
-- through the history (subscription.Ladder, at most 24 a customer), so that a late event loads
-- only the events after the newest rung before it. events is how many events the checkpoint
-- folded, which spaces the rungs without decoding state. The rows of the single checkpoint are
-- of fold version 1, which this code ignores (version 2 records events): they are deleted here,
-- which is always safe (each customer is derived from its whole history once more).
DELETE FROM customer_checkpoints;
ALTER TABLE customer_checkpoints
    ADD COLUMN events bigint NOT NULL,
    DROP CONSTRAINT customer_checkpoints_pkey,
    ADD PRIMARY KEY (livemode, account, customer_id, checkpoint_created);
