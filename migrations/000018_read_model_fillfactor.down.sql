ALTER TABLE customer_entitlements RESET (fillfactor);
ALTER TABLE user_entitlements RESET (fillfactor);
ALTER TABLE notification_state RESET (fillfactor);
