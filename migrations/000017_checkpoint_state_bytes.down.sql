ALTER TABLE customer_checkpoints
    ALTER COLUMN state TYPE jsonb USING convert_from(state, 'UTF8')::jsonb;
