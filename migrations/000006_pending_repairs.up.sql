-- Repairs: objects the processor must read from the Stripe API and store as snapshot events
-- (tgsnap_…, tollgate.snapshot.<object>), because an event named them without their state (a thin
-- event, v2.core.health.event_generation_failure.resolved) or with only part of it (an entitlement
-- summary with has_more). A row is written in the transaction that stores its event, so no repair
-- is lost; it stays open (done_at null) until its snapshots are in the stream, which without
-- STRIPE_API_KEY is until a key is configured. Only pkg/repair writes it.
CREATE TABLE pending_repairs (
    id              bigserial   PRIMARY KEY,
    object_type     text        NOT NULL, -- Stripe's object name: subscription, customer, checkout.session, entitlements.active_entitlement_summary
    object_id       text        NOT NULL, -- the object's id; the customer's for an entitlement summary
    livemode        boolean     NOT NULL,
    account         text        NOT NULL DEFAULT '', -- the Connect account (thin event context), '' for the platform
    source_event_id text        NOT NULL, -- the event that asked for it
    reason          text        NOT NULL, -- thin event, event generation failure, summary has_more
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    done_at         timestamptz,
    outcome         text, -- applied, or why nothing was stored (not found)
    UNIQUE (source_event_id, object_type, object_id)
);
CREATE INDEX pending_repairs_open ON pending_repairs (id) WHERE done_at IS NULL;
