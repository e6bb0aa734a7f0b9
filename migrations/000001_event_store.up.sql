-- The event store: one row per Stripe event id, forever. The primary key is the permanent
-- dedupe that outlives JetStream's duplicate window and Stripe's three days of retries.
CREATE TABLE stripe_events (
    id          text        PRIMARY KEY,
    type        text        NOT NULL,
    created     bigint      NOT NULL,            -- Stripe's `created`, Unix seconds
    livemode    boolean     NOT NULL,
    api_version text,                            -- NULL when the payload does not say
    account     text,                            -- Connect account, NULL for the platform
    customer_id text,                            -- NULL for events of no customer (catalog, ...)
    payload     bytea       NOT NULL,            -- the raw bytes exactly as Stripe sent them
    received_at timestamptz NOT NULL DEFAULT now()
);

-- "This customer's history in order": the derivation reads it whole, then orders ties in Go.
CREATE INDEX stripe_events_customer_history ON stripe_events (customer_id, created, id)
    WHERE customer_id IS NOT NULL;
