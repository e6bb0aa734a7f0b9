DROP TABLE notification_outbox;
DROP TABLE notification_state;
