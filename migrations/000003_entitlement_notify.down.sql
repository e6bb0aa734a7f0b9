DROP TRIGGER IF EXISTS switches_notify ON switches;
DROP FUNCTION IF EXISTS tollgate_notify_switch();
DROP TRIGGER IF EXISTS user_entitlements_notify_truncate ON user_entitlements;
DROP TRIGGER IF EXISTS user_entitlements_notify ON user_entitlements;
DROP TRIGGER IF EXISTS customer_entitlements_notify_truncate ON customer_entitlements;
DROP TRIGGER IF EXISTS customer_entitlements_notify ON customer_entitlements;
DROP FUNCTION IF EXISTS tollgate_notify_entitlement();
