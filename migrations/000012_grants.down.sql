DROP TABLE grant_log;
DROP TABLE grants;
DROP FUNCTION tollgate_grants_append_only();
DROP FUNCTION tollgate_grant_log_append_only();
-- Rows of users known only by a grant have no event: they go with the grants.
DELETE FROM user_entitlements WHERE last_event_id IS NULL OR last_event_created IS NULL;
ALTER TABLE user_entitlements ALTER COLUMN last_event_id SET NOT NULL,
    ALTER COLUMN last_event_created SET NOT NULL,
    DROP COLUMN grants, DROP COLUMN limits;
ALTER TABLE customer_entitlements DROP COLUMN limits;
