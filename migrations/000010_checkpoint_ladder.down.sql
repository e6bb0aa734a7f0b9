-- Back to one checkpoint a customer: keep the newest. Its version (2) is ignored by the code of
-- schema 9, which rewrites it at the customer's next event.
DELETE FROM customer_checkpoints c WHERE EXISTS (
    SELECT 1 FROM customer_checkpoints n
    WHERE (n.livemode, n.account, n.customer_id) = (c.livemode, c.account, c.customer_id)
      AND n.checkpoint_created > c.checkpoint_created);
ALTER TABLE customer_checkpoints
    DROP CONSTRAINT customer_checkpoints_pkey,
    DROP COLUMN events,
    ADD PRIMARY KEY (livemode, account, customer_id);
