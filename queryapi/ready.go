package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tollgate/tollgate/migrations"
	"github.com/tollgate/tollgate/pkg/httpx"
)

// readyTimeout bounds the checks of one /readyz.
const readyTimeout = 2 * time.Second

// readiness checks what the answers depend on: Postgres answers, and its schema is the one this
// build reads (migrations.Version, not dirty).
type readiness struct {
	q     rowQuerier
	sw    interface{ Status() switchStatus }
	cache interface{ state() string }
	log   *slog.Logger // the details of a failed check; the answer gives only httpx.PublicReason
}

// readyBody is the answer of /readyz: httpx's {"ready","reason"} plus the operator's view of the
// instance.
type readyBody struct {
	httpx.ReadyBody
	SchemaVersion     *uint      `json:"schema_version"`
	WantSchemaVersion uint       `json:"want_schema_version"`
	FailOpen          bool       `json:"fail_open"`
	FailOpenSince     *time.Time `json:"fail_open_since"`
	// Cache is "listening" while change notifications keep the cache fresh, "max-age" when it
	// serves without them (QUERYAPI_CACHE_MODE=max-age), else "off" (every answer is read from
	// Postgres).
	Cache string `json:"cache"`
}

// errSchema marks a schema that is not the one this build reads.
var errSchema = errors.New("schema")

func (r *readiness) check(ctx context.Context) readyBody {
	st := r.sw.Status()
	b := readyBody{WantSchemaVersion: migrations.Version, FailOpen: st.On, Cache: r.cache.state()}
	if !st.Since.IsZero() {
		since := st.Since
		b.FailOpenSince = &since
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var version int64
	var dirty bool
	err := r.q.QueryRow(ctx, `SELECT version, dirty FROM schema_migrations LIMIT 1`).Scan(&version, &dirty)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		err = fmt.Errorf("%w: no migration applied; run `processor migrate`", errSchema)
	case err != nil:
		// The driver's error names the user, database and host: the log has it, the
		// unauthenticated answer only says Postgres.
		if r.log != nil {
			r.log.Warn("not ready", "error", fmt.Errorf("postgres: %w", err))
		}
		b.Reason = httpx.PublicReason(fmt.Errorf("postgres: %w", err))
		return b
	default:
		v := uint(max(version, 0)) //nolint:gosec // clamped at 0; migration numbers are small
		b.SchemaVersion = &v
		switch {
		case dirty:
			err = fmt.Errorf("%w: version %d is dirty (a migration failed halfway); fix it, then `processor migrate`", errSchema, version)
		case v != migrations.Version:
			err = fmt.Errorf("%w: version %d, this build reads version %d", errSchema, version, migrations.Version)
		}
	}
	if err != nil {
		b.Reason = err.Error()
		return b
	}
	b.Ready = true
	return b
}

// readyz is GET /readyz: 200 when ready, 503 with the reason otherwise.
func (s *server) readyz(c echo.Context) error {
	b := s.ready.check(c.Request().Context())
	if !b.Ready {
		return c.JSON(http.StatusServiceUnavailable, b)
	}
	return c.JSON(http.StatusOK, b)
}
