DROP INDEX IF EXISTS stripe_events_customer_email;
DROP FUNCTION IF EXISTS tollgate_event_email(bytea);
DROP TABLE IF EXISTS admin_audit;
DROP TABLE IF EXISTS console_sessions;
