-- Scopes: every event belongs to a Stripe mode (livemode) and, for Connect, to a connected account
-- (NULL in stripe_events for the platform's own events). The read model is derived and answered per
-- scope, so a test-mode event never changes a live answer and two connected accounts never mix.
-- In the read model the platform is account '' (a key column cannot be NULL).
--
-- Rows already derived keep the scope of the event they were last derived from (their
-- last_event_id, whose stored row carries livemode and account as Stripe sent them). A customer or
-- user whose history mixed scopes before this migration was derived wrongly; `processor replay --all`
-- re-derives every scope from the stored events.
ALTER TABLE customer_entitlements ADD COLUMN livemode boolean, ADD COLUMN account text NOT NULL DEFAULT '';
ALTER TABLE user_entitlements ADD COLUMN livemode boolean, ADD COLUMN account text NOT NULL DEFAULT '';

UPDATE customer_entitlements r SET livemode = e.livemode, account = coalesce(e.account, '')
    FROM stripe_events e WHERE e.id = r.last_event_id;
UPDATE user_entitlements r SET livemode = e.livemode, account = coalesce(e.account, '')
    FROM stripe_events e WHERE e.id = r.last_event_id;
-- A row whose last event is not stored (not written by the processor) is taken as live platform.
UPDATE customer_entitlements SET livemode = true WHERE livemode IS NULL;
UPDATE user_entitlements SET livemode = true WHERE livemode IS NULL;
ALTER TABLE customer_entitlements ALTER COLUMN livemode SET NOT NULL, ALTER COLUMN account DROP DEFAULT;
ALTER TABLE user_entitlements ALTER COLUMN livemode SET NOT NULL, ALTER COLUMN account DROP DEFAULT;

ALTER TABLE customer_entitlements DROP CONSTRAINT customer_entitlements_pkey,
    ADD PRIMARY KEY (livemode, account, customer_id);
ALTER TABLE user_entitlements DROP CONSTRAINT user_entitlements_pkey,
    ADD PRIMARY KEY (livemode, account, user_id);
DROP INDEX customer_entitlements_user;
CREATE INDEX customer_entitlements_user ON customer_entitlements (livemode, account, user_id) WHERE user_id IS NOT NULL;

-- A scope's history of a customer: the derivation reads it whole.
DROP INDEX stripe_events_customer_history;
CREATE INDEX stripe_events_customer_history ON stripe_events (customer_id, livemode, (coalesce(account, '')), created, id)
    WHERE customer_id IS NOT NULL;

-- The notifications carry the scope: '<u|c>:<live|test> <account> <id>' (account '' for the
-- platform, so two spaces; accounts hold no spaces, ids may), e.g. 'u:live  u_42' or
-- 'c:test acct_1 cus_1'. '*' after a TRUNCATE as before.
CREATE OR REPLACE FUNCTION tollgate_notify_entitlement() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_key text;
    new_key text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('tollgate_entitlements', '*');
        RETURN NULL;
    END IF;
    -- Each branch names only its own table's columns: plpgsql resolves OLD/NEW fields per table.
    IF TG_TABLE_NAME = 'user_entitlements' THEN
        IF TG_OP <> 'INSERT' THEN
            old_key := 'u:' || CASE WHEN OLD.livemode THEN 'live' ELSE 'test' END || ' ' || OLD.account || ' ' || OLD.user_id;
        END IF;
        IF TG_OP <> 'DELETE' THEN
            new_key := 'u:' || CASE WHEN NEW.livemode THEN 'live' ELSE 'test' END || ' ' || NEW.account || ' ' || NEW.user_id;
        END IF;
    ELSE
        IF TG_OP <> 'INSERT' THEN
            old_key := 'c:' || CASE WHEN OLD.livemode THEN 'live' ELSE 'test' END || ' ' || OLD.account || ' ' || OLD.customer_id;
        END IF;
        IF TG_OP <> 'DELETE' THEN
            new_key := 'c:' || CASE WHEN NEW.livemode THEN 'live' ELSE 'test' END || ' ' || NEW.account || ' ' || NEW.customer_id;
        END IF;
    END IF;
    IF old_key IS NOT NULL THEN
        PERFORM pg_notify('tollgate_entitlements', old_key);
    END IF;
    IF new_key IS NOT NULL AND new_key IS DISTINCT FROM old_key THEN
        PERFORM pg_notify('tollgate_entitlements', new_key);
    END IF;
    RETURN NULL;
END
$$;
