DROP TABLE customer_checkpoints;
