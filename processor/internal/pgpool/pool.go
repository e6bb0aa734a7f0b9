// Package pgpool opens the processor's Postgres pool, checks the schema version and applies
// the migrations at start (retried while Postgres does not answer).
package pgpool

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tollgate/tollgate/migrations"
)

// Open opens a connection pool without connecting yet. Connection attempts time out after
// 5 s unless DATABASE_URL sets connect_timeout.
//
// Each connection asks for lz4 compression of the large values it writes (the raw payloads of
// stripe_events, 2-8 KB each, stored out of line and compressed). Postgres's default, pglz, costs
// several times the CPU: on a 2-core machine shared with Postgres it took a 100,000-event burst
// from about 3,900 to 2,400 events/s. A server built without lz4 refuses the setting and keeps
// pglz; nothing else changes (each stored value records its own compression, any Postgres 14+
// reads both).
func Open(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	// Every statement of the processor looks rows up by key. A prepared statement's generic plan
	// is made once, and one made while stripe_events was tiny (a new deployment) stays a
	// sequential scan as the table grows: measured in a soak, the history queries then took
	// 0.4-2.6 s per batch at 60,000 events and the processor fell behind. Planning each
	// execution instead goes wrong on a table not yet analyzed (a 1,000-key array is then
	// estimated to match every row). With sequential scans priced out, both plans use the
	// indexes; a query with no index to use still gets its sequential scan.
	cfg.ConnConfig.RuntimeParams["enable_seqscan"] = "off"
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, _ = conn.Exec(ctx, `SET default_toast_compression = lz4`) // refused without lz4 support: keep pglz
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	return pool, nil
}

// OpenCommand opens a pool for an operator command: Postgres must answer and its schema
// must be the one this code expects.
func OpenCommand(ctx context.Context, url string) (*pgxpool.Pool, error) {
	if err := SchemaStatus(url); err != nil {
		return nil, err
	}
	pool, err := Open(ctx, url)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("DATABASE_URL: Postgres does not answer: %w", err)
	}
	return pool, nil
}

// SchemaStatus is nil when the database's schema is migrations.Version and clean. It connects
// through golang-migrate, which waits for a migration running elsewhere to finish.
func SchemaStatus(url string) error {
	v, dirty, err := migrations.Current(withConnectTimeout(url))
	switch {
	case err != nil:
		return fmt.Errorf("DATABASE_URL: read schema version: %w", err)
	case dirty:
		return fmt.Errorf("schema: version %d is dirty (a migration failed halfway; repair it, then run processor migrate)", v)
	case v != migrations.Version:
		return fmt.Errorf("schema: version %d, this processor needs %d (run processor migrate)", v, migrations.Version)
	}
	return nil
}

// withConnectTimeout adds connect_timeout=5 to a database URL that sets none, so a connection
// attempt to a Postgres that does not answer fails instead of hanging.
func withConnectTimeout(databaseURL string) string {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return databaseURL
	}
	q := u.Query()
	if q.Get("connect_timeout") == "" {
		q.Set("connect_timeout", "5")
		u.RawQuery = q.Encode()
	}
	return u.String()
}
