-- Console sessions: the cookie holds a random session id, never an admin token; the table keeps
-- only its SHA-256 (a read of the table gives no usable cookie). token_digest is the SHA-256 of
-- the admin token the session was opened with: the session ends when that token leaves
-- ADMIN_TOKENS. A session ends 12 hours after created_at, 1 hour after last_used_at, or at logout
-- (ended_at).
CREATE TABLE console_sessions (
    id_hash      bytea       PRIMARY KEY,
    token_name   text        NOT NULL,
    token_digest bytea       NOT NULL,
    csrf         text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now(),
    ended_at     timestamptz
);
CREATE INDEX console_sessions_created ON console_sessions (created_at);

-- Every change made through the admin API, the console or the CLI, with the name of the admin
-- token that made it (ADMIN_TOKENS name:token), kept for good: who, what, when, the outcome.
CREATE TABLE admin_audit (
    id      bigserial   PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text        NOT NULL,
    via     text        NOT NULL,
    action  text        NOT NULL,
    target  text        NOT NULL DEFAULT '',
    outcome text        NOT NULL,
    remote  text        NOT NULL DEFAULT ''
);
CREATE INDEX admin_audit_at ON admin_audit (at DESC, id DESC);

-- The console's email search reads this index instead of decoding every customer event. The
-- function is declared IMMUTABLE: it depends only on the payload and the database's encoding,
-- which never changes for a database. A payload that is not UTF-8 JSON has no email (NULL) rather
-- than failing the index.
CREATE FUNCTION tollgate_event_email(payload bytea) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN lower(convert_from(payload, 'UTF8')::jsonb #>> '{data,object,email}');
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END $$;
CREATE INDEX stripe_events_customer_email ON stripe_events (tollgate_event_email(payload))
    WHERE customer_id IS NOT NULL
      AND type IN ('customer.created', 'customer.updated', 'customer.deleted', 'tollgate.snapshot.customer');
