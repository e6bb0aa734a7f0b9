-- Back to one scope: each id keeps one row, the live platform's where there is one (the rows of
-- other scopes are dropped; `processor replay --all` re-derives with the older code's rules).
DELETE FROM customer_entitlements WHERE ctid IN (SELECT ctid FROM (SELECT ctid,
    row_number() OVER (PARTITION BY customer_id ORDER BY livemode DESC, account) AS n FROM customer_entitlements) r WHERE n > 1);
DELETE FROM user_entitlements WHERE ctid IN (SELECT ctid FROM (SELECT ctid,
    row_number() OVER (PARTITION BY user_id ORDER BY livemode DESC, account) AS n FROM user_entitlements) r WHERE n > 1);

DROP INDEX stripe_events_customer_history;
CREATE INDEX stripe_events_customer_history ON stripe_events (customer_id, created, id)
    WHERE customer_id IS NOT NULL;
DROP INDEX customer_entitlements_user;
ALTER TABLE user_entitlements DROP CONSTRAINT user_entitlements_pkey, DROP COLUMN livemode, DROP COLUMN account,
    ADD PRIMARY KEY (user_id);
ALTER TABLE customer_entitlements DROP CONSTRAINT customer_entitlements_pkey, DROP COLUMN livemode, DROP COLUMN account,
    ADD PRIMARY KEY (customer_id);
CREATE INDEX customer_entitlements_user ON customer_entitlements (user_id) WHERE user_id IS NOT NULL;

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
    IF TG_TABLE_NAME = 'user_entitlements' THEN
        IF TG_OP <> 'INSERT' THEN old_key := 'u:' || OLD.user_id; END IF;
        IF TG_OP <> 'DELETE' THEN new_key := 'u:' || NEW.user_id; END IF;
    ELSE
        IF TG_OP <> 'INSERT' THEN old_key := 'c:' || OLD.customer_id; END IF;
        IF TG_OP <> 'DELETE' THEN new_key := 'c:' || NEW.customer_id; END IF;
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
