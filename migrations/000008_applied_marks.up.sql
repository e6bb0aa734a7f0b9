-- Read your writes (issue 15): the ids of the events and completed Checkout Sessions the
-- processor applied in the last day, with their customer, written in the transaction that
-- changed the read model. The query API's ?wait_for= reads it (and only it: its role never
-- reads stripe_events). The processor prunes rows older than a day.
CREATE TABLE applied_marks (
    id          text        PRIMARY KEY,   -- evt_… or cs_…
    livemode    boolean     NOT NULL,      -- the customer's scope (migration 000005)
    account     text        NOT NULL DEFAULT '',
    customer_id text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX applied_marks_age ON applied_marks (applied_at);
