-- A checkpoint's state is only ever written and read whole by the processor, never queried
-- inside: store its JSON as bytes, not jsonb. jsonb parses every value written (one checkpoint
-- a customer a batch, the largest rows a drain writes) and prints it again for every read; in a
-- burst of 80,000 events that parse and print were the costliest statements Postgres ran
-- (bench/drain.md). The text is the same JSON, so every stored checkpoint stays valid.
ALTER TABLE customer_checkpoints
    ALTER COLUMN state TYPE bytea USING convert_to(state::text, 'UTF8');
