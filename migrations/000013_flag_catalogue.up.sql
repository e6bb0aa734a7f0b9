-- The flag catalogue: every feature and limit name that can appear in an answer, so that the
-- query API's OpenFeature endpoint (/ofrep/v1) tells a flag that exists but is off (false, 0)
-- from a flag that does not exist (FLAG_NOT_FOUND: a typo must not silently answer false).
-- The processor writes the names PLANS_FILE gives (source 'plans', the whole set replaced at
-- start) and the names of grants (source 'grant'); the query API only reads it (pkg/catalogue
-- holds every statement). A name is a boolean flag (kind 'feature') or an integer one ('limit').
CREATE TABLE flag_catalogue (
    name text NOT NULL CHECK (name <> ''),
    kind text NOT NULL CHECK (kind IN ('feature', 'limit')),
    source text NOT NULL CHECK (source IN ('plans', 'grant')),
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, name, kind)
);

-- Every change of the catalogue notifies the query API's LISTEN session (payload-less: the
-- catalogue is small and read whole), once per statement.
CREATE FUNCTION tollgate_notify_catalogue() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tollgate_catalogue', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER flag_catalogue_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON flag_catalogue
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_notify_catalogue();
