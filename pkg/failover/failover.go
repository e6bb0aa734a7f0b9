// Package failover gives a database back the commits it lost: the last transactions a Postgres
// primary acknowledged before it died and its standby never received (asynchronous replication,
// Postgres's default), or everything after the point a backup was restored to.
//
// The processor acknowledges an event to JetStream once the transaction that stored it commits.
// If that commit is then lost with the primary, the event is gone from the database although the
// stream counts it as applied. The stream keeps applied events for a window
// (STREAM_RETAIN_APPLIED, stream.Retainer), and Regain reads that window back and applies what
// the event store lacks; the event store ignores the ids it holds, so re-reading is harmless.
//
// When to regain is told by the database's timeline: promoting a standby, or restoring a backup
// with point-in-time recovery, starts a new one. Check compares the server's timeline with the
// one recorded in database_timeline and regains before it records the new one, so a processor
// that dies halfway does it again at its next check. An operator who restored a database by
// other means runs `processor recover --since …`, which regains the same way (and, with a Stripe
// API key, backfills beyond the stream's window).
package failover

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/pkg/stripeevent"
)

// DB is what the timeline check needs of Postgres: a pool, a connection or a transaction.
type DB interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Timeline is the timeline the server writes its WAL on now: the first eight hex digits of the
// current WAL file's name. Unlike pg_control_checkpoint()'s, it moves the moment a standby is
// promoted, not at the next checkpoint (which may be minutes later). Only a primary has one.
func Timeline(ctx context.Context, db DB) (int64, error) {
	var tli int64
	err := db.QueryRow(ctx, `SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint`).Scan(&tli)
	if err != nil {
		return 0, fmt.Errorf("database timeline: %w", err)
	}
	return tli, nil
}

// Change is what Check found.
type Change struct {
	From, To int64 // the recorded timeline (0: none recorded yet) and the server's
}

// Changed reports whether the database moved to a new timeline since it was recorded.
func (c Change) Changed() bool { return c.From != 0 && c.From != c.To }

// Check compares the server's timeline with the recorded one. The first time (nothing
// recorded) it records it. When it differs, it calls regain and records the new timeline only
// once regain succeeded. Two processors may both regain after one promotion: harmless.
func Check(ctx context.Context, db DB, regain func(context.Context, Change) error) (Change, error) {
	var c Change
	var err error
	if c.To, err = Timeline(ctx, db); err != nil {
		return c, err
	}
	err = db.QueryRow(ctx, `SELECT timeline FROM database_timeline`).Scan(&c.From)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("recorded database timeline: %w", err)
	}
	if c.From == c.To {
		return c, nil
	}
	if c.Changed() {
		if err := regain(ctx, c); err != nil {
			return c, err
		}
	}
	_, err = db.Exec(ctx, `INSERT INTO database_timeline (timeline) VALUES ($1)
		ON CONFLICT (one) DO UPDATE SET timeline = EXCLUDED.timeline, seen_at = now()`, c.To)
	if err != nil {
		return c, fmt.Errorf("record database timeline %d: %w", c.To, err)
	}
	return c, nil
}

// Regained counts what Regain did.
type Regained struct {
	Read    int // messages read back from the stream
	Missing int // of them, events the event store lacked, handed to apply
}

// batchSize is how many retained messages are looked up in the event store at once.
const batchSize = 500

// Regain reads back the events the stream retains that were stored at or after since (the
// zero time: all of them) and calls apply with the raw payloads of those the event store does
// not hold, in stream order, a batch at a time. apply stores and derives them as the consumer
// does (the event store ignores an id it holds meanwhile).
func Regain(ctx context.Context, js jetstream.JetStream, q eventstore.Querier, since time.Time, apply func(context.Context, [][]byte) error) (Regained, error) {
	var r Regained
	var ids []string
	var raws [][]byte
	flush := func() error {
		if len(ids) == 0 {
			return nil
		}
		missing, err := eventstore.Missing(ctx, q, ids)
		if err != nil {
			return err
		}
		want := make(map[string]bool, len(missing))
		for _, id := range missing {
			want[id] = true
		}
		var apply1 [][]byte
		for i, id := range ids {
			if want[id] {
				apply1 = append(apply1, raws[i])
				delete(want, id) // a message stored twice (a restarted server's) once
			}
		}
		ids, raws = ids[:0], raws[:0]
		if len(apply1) == 0 {
			return nil
		}
		r.Missing += len(apply1)
		return apply(ctx, apply1)
	}
	n, err := stream.ReadRetained(ctx, js, since, func(m stream.Retained) error {
		id := m.MsgID
		if id == "" {
			ev, err := stripeevent.Parse(m.Data)
			if err != nil {
				return nil // never stored: the consumer dead-letters it
			}
			id = ev.ID
		}
		ids, raws = append(ids, id), append(raws, m.Data)
		if len(ids) == batchSize {
			return flush()
		}
		return nil
	})
	r.Read = n
	if err == nil {
		err = flush()
	}
	if err != nil {
		return r, fmt.Errorf("regain lost commits from the stream: %w", err)
	}
	return r, nil
}
