-- The read model the query API answers from. Both tables are derived from stripe_events and
-- can be rebuilt at any time with `processor replay --all`.

-- One row per customer: the derivation of that customer's whole history.
CREATE TABLE customer_entitlements (
    customer_id        text        PRIMARY KEY,
    user_id            text,
    deleted            boolean     NOT NULL DEFAULT false,
    premium            boolean     NOT NULL,
    status             text        NOT NULL,
    features           text[]      NOT NULL,
    subscriptions      jsonb       NOT NULL,
    last_event_id      text        NOT NULL,
    last_event_created timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customer_entitlements_user ON customer_entitlements (user_id) WHERE user_id IS NOT NULL;

-- One row per app user: the union of the rows of all customers that carry the user id.
CREATE TABLE user_entitlements (
    user_id            text        PRIMARY KEY,
    customer_ids       text[]      NOT NULL,
    premium            boolean     NOT NULL,
    status             text        NOT NULL,
    features           text[]      NOT NULL,
    subscriptions      jsonb       NOT NULL,
    last_event_id      text        NOT NULL,
    last_event_created timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Events the processor gave up on (unparseable, no id): kept whole with the reason.
CREATE TABLE dead_letters (
    id          bigserial   PRIMARY KEY,
    event_id    text,                            -- NULL when the payload has no readable id
    subject     text        NOT NULL,
    stream_seq  bigint      NOT NULL UNIQUE,
    payload     bytea       NOT NULL,
    reason      text        NOT NULL,
    attempts    integer     NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_event ON dead_letters (event_id);

-- Operator switches. fail_open: while true every entitlement answer grants access.
CREATE TABLE switches (
    name       text        PRIMARY KEY,
    enabled    boolean     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO switches (name, enabled) VALUES ('fail_open', false);
