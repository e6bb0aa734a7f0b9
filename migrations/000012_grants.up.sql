-- Limits and grants.
--
-- Limits: the read model's answers gain `limits` (a limit name -> an integer, '{}' when none):
-- rows derived before this migration have none until `processor replay --all` (or their next
-- event) derives them with the plans file's limits.
ALTER TABLE customer_entitlements ADD COLUMN limits jsonb NOT NULL DEFAULT '{}';
ALTER TABLE user_entitlements ADD COLUMN limits jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN grants jsonb NOT NULL DEFAULT '[]';
-- A user known only by a grant has no event.
ALTER TABLE user_entitlements ALTER COLUMN last_event_id DROP NOT NULL,
    ALTER COLUMN last_event_created DROP NOT NULL;

-- Grants: access an operator gives outside Stripe (a comp account, a support extension), per
-- scope and user. A grant's terms never change; it ends once, revoked or expired, and is kept
-- for good with who ended it and why. pkg/grant holds every statement on grants and grant_log.
CREATE TABLE grants (
    id           text        PRIMARY KEY,              -- grt_…
    livemode     boolean     NOT NULL,
    account      text        NOT NULL,                 -- '' for the platform
    user_id      text        NOT NULL,
    features     text[]      NOT NULL,
    limits       jsonb       NOT NULL,
    until        timestamptz,                          -- NULL: until revoked
    reason       text        NOT NULL,
    created_by   text        NOT NULL,                 -- the admin token's name
    created_at   timestamptz NOT NULL DEFAULT now(),
    ended_at     timestamptz,
    ended_why    text        CHECK (ended_why IN ('revoked', 'expired')),
    ended_by     text,
    ended_reason text,
    CHECK ((ended_at IS NULL) = (ended_why IS NULL)),
    CHECK (cardinality(features) > 0 OR limits <> '{}'::jsonb)
);
CREATE INDEX grants_user ON grants (livemode, account, user_id, created_at, id);
-- The expiry's one question: which active grants are due.
CREATE INDEX grants_due ON grants (until) WHERE ended_at IS NULL AND until IS NOT NULL;

-- The log: one row per thing that happened to a grant, in order, never changed.
CREATE TABLE grant_log (
    seq      bigserial   PRIMARY KEY,
    grant_id text        NOT NULL REFERENCES grants (id),
    action   text        NOT NULL CHECK (action IN ('created', 'revoked', 'expired')),
    at       timestamptz NOT NULL DEFAULT now(),
    by       text        NOT NULL,
    reason   text        NOT NULL DEFAULT ''
);
CREATE INDEX grant_log_grant ON grant_log (grant_id, seq);

-- Kept for good: a grant may only be ended (once), the log only appended to.
CREATE FUNCTION tollgate_grants_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL
            AND (NEW.id, NEW.livemode, NEW.account, NEW.user_id, NEW.features, NEW.limits, NEW.until, NEW.reason,
                 NEW.created_by, NEW.created_at)
                IS NOT DISTINCT FROM (OLD.id, OLD.livemode, OLD.account, OLD.user_id, OLD.features, OLD.limits, OLD.until,
                 OLD.reason, OLD.created_by, OLD.created_at) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'grants is append-only: % refused (a grant only ends, once)', TG_OP;
END $$;
CREATE TRIGGER grants_append_only BEFORE UPDATE OR DELETE ON grants
    FOR EACH ROW EXECUTE FUNCTION tollgate_grants_append_only();

CREATE FUNCTION tollgate_grant_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'grant_log is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER grant_log_append_only BEFORE UPDATE OR DELETE ON grant_log
    FOR EACH ROW EXECUTE FUNCTION tollgate_grant_log_append_only();
