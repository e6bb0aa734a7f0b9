-- Notifications to the app (issue 15): written by the processor in the transaction that changes
-- the read model, delivered from here by the processor (pkg/outbox holds every statement).
-- notification_state is, per user and scope, the last answer notified and its sequence.
CREATE TABLE notification_state (
    livemode boolean NOT NULL,
    account  text    NOT NULL DEFAULT '',   -- '' for the platform
    user_id  text    NOT NULL,
    sequence bigint  NOT NULL,
    digest   text    NOT NULL,              -- of the answer's fields that make a change
    PRIMARY KEY (livemode, account, user_id)
);

-- One row per notification and URL (NOTIFY_URLS); id is the webhook-id, stable across retries.
CREATE TABLE notification_outbox (
    id              text        NOT NULL,
    url             text        NOT NULL,
    livemode        boolean     NOT NULL,
    account         text        NOT NULL DEFAULT '',
    user_id         text        NOT NULL,
    sequence        bigint      NOT NULL,
    body            bytea       NOT NULL,   -- exactly what is signed and POSTed
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    failed_at       timestamptz,           -- given up on (24 h of failures)
    last_error      text,
    PRIMARY KEY (id, url)
);

CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
