package pgpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tollgate/tollgate/migrations"
	"github.com/tollgate/tollgate/pkg/backoff"
)

const (
	// migrateTimeout bounds the wait for Postgres at start; past it the process exits non-zero
	// and its supervisor restarts it.
	migrateTimeout = time.Minute
	// schemaEvery is how often serve re-reads the schema version for readiness.
	schemaEvery = 15 * time.Second
)

// Migrate applies pending migrations, retrying with a capped backoff while Postgres cannot be
// reached, until it succeeds, ctx is done or migrateTimeout passed. Any other failure (SQL error,
// dirty schema) is not retried.
func Migrate(ctx context.Context, databaseURL string, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, migrateTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		err := migrations.Up(withConnectTimeout(databaseURL))
		if err == nil {
			logger.Info("schema ready", "version", migrations.Version)
			return nil
		}
		var connectErr *pgconn.ConnectError
		if !errors.As(err, &connectErr) || ctx.Err() != nil {
			return fmt.Errorf("DATABASE_URL: apply migrations (attempt %d): %w", attempt, err)
		}
		wait := backoff.Policy{Base: 250 * time.Millisecond, Max: 5 * time.Second}.Delay(attempt)
		logger.Warn("cannot apply migrations yet; retrying", "attempt", attempt, "retry_in", wait.String(), "error", err)
		_ = backoff.Sleep(ctx, wait)
		if ctx.Err() != nil {
			return fmt.Errorf("DATABASE_URL: Postgres did not answer within %s: %w", migrateTimeout, err)
		}
	}
}
