-- Change notifications for the query API's in-process cache. Every write to the read model, by
-- whatever writes it, sends pg_notify('tollgate_entitlements', …) when its transaction commits:
--   'u:<user_id>' for a row of user_entitlements, 'c:<customer_id>' for customer_entitlements,
--   '*' after a TRUNCATE of either table (drop everything).
-- An UPDATE that changes the key notifies both the old and the new key. Postgres folds identical
-- payloads of one transaction into one notification, so a batch costs one per key.
-- A flip of an operator switch sends 's:<name>' on 'tollgate_switches'.
CREATE FUNCTION tollgate_notify_entitlement() RETURNS trigger
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

CREATE TRIGGER customer_entitlements_notify
    AFTER INSERT OR UPDATE OR DELETE ON customer_entitlements
    FOR EACH ROW EXECUTE FUNCTION tollgate_notify_entitlement();
CREATE TRIGGER customer_entitlements_notify_truncate
    AFTER TRUNCATE ON customer_entitlements
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_notify_entitlement();
CREATE TRIGGER user_entitlements_notify
    AFTER INSERT OR UPDATE OR DELETE ON user_entitlements
    FOR EACH ROW EXECUTE FUNCTION tollgate_notify_entitlement();
CREATE TRIGGER user_entitlements_notify_truncate
    AFTER TRUNCATE ON user_entitlements
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_notify_entitlement();

CREATE FUNCTION tollgate_notify_switch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tollgate_switches', 's:' || NEW.name);
    RETURN NULL;
END
$$;

CREATE TRIGGER switches_notify
    AFTER INSERT OR UPDATE ON switches
    FOR EACH ROW EXECUTE FUNCTION tollgate_notify_switch();
