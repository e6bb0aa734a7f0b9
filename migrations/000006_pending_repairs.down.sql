DROP TABLE pending_repairs;
