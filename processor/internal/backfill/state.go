package backfill

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tollgate/tollgate/pkg/scope"
)

// The backfill keeps its state in Postgres (table backfill_state, migration 000004): the
// checkpoints of interrupted runs (checkpoint.<hash of the parameters>) and the last successful
// scheduled run (scheduledKey). This file is the only one that writes that table.
const scheduledKey = "scheduled.last_success"

// BackfillLockKey is the Postgres advisory lock (one bigint key, session level) that lets one
// processor at a time run the scheduled backfill: "tollgate" "bkfl" in ASCII.
const BackfillLockKey int64 = 0x746f6c6c_626b666c

// errLockHeld means another processor holds the scheduled backfill's lock.
var errLockHeld = errors.New("another processor is running the scheduled backfill")

// Checkpoint is how far an unfinished backfill got. A run with the same parameters resumes it:
// the same created bounds, after the last event done. StartingAfter is "" until the first
// event was stored.
type Checkpoint struct {
	Params        string    `json:"params"`
	CreatedGTE    int64     `json:"created_gte"`
	CreatedLTE    int64     `json:"created_lte"`
	StartingAfter string    `json:"starting_after"`
	Counts        Counts    `json:"counts"`
	StartedAt     time.Time `json:"started_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// ScheduledState is the last successful scheduled backfill of any processor.
type ScheduledState struct {
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Instance   string    `json:"instance"`
	Counts     Counts    `json:"counts"`
}

// CheckpointKey names the checkpoint of a backfill by its parameters, so that running the same
// command again finds it: since as given (relative, not the absolute bounds, which the checkpoint
// keeps), the undelivered filter and the set of types.
func CheckpointKey(sc scope.Scope, since time.Duration, undelivered bool, types []string) (key, params string) {
	ts := slices.Clone(types)
	slices.Sort(ts)
	ts = slices.Compact(ts)
	params = fmt.Sprintf("since=%s undelivered=%t types=%s scope=%s", ShortDuration(since), undelivered, strings.Join(ts, ","), sc)
	sum := sha256.Sum256([]byte(params))
	return "checkpoint." + hex.EncodeToString(sum[:8]), params
}

// StateQuerier is what the state store needs of Postgres: a pool, a connection or a transaction.
type StateQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// StateStore reads and writes the backfill's state in backfill_state. It is safe for concurrent
// use when its querier is (a pool is).
type StateStore struct {
	DB StateQuerier
}

// LoadCheckpoint reads the checkpoint under key; found is false when there is none.
func (s *StateStore) LoadCheckpoint(ctx context.Context, key string) (cp Checkpoint, found bool, err error) {
	found, err = s.Get(ctx, key, &cp)
	return cp, found, err
}

// SaveCheckpoint writes cp under key.
func (s *StateStore) SaveCheckpoint(ctx context.Context, key string, cp Checkpoint) error {
	cp.UpdatedAt = time.Now().UTC()
	return s.Put(ctx, key, cp)
}

// DeleteCheckpoint removes the checkpoint under key: the run it belonged to is complete.
func (s *StateStore) DeleteCheckpoint(ctx context.Context, key string) error {
	if _, err := s.DB.Exec(ctx, `DELETE FROM backfill_state WHERE key = $1`, key); err != nil {
		return fmt.Errorf("delete backfill checkpoint %s: %w", key, err)
	}
	return nil
}

// LastScheduled reads the last successful scheduled run; found is false before the first.
func (s *StateStore) LastScheduled(ctx context.Context) (st ScheduledState, found bool, err error) {
	found, err = s.Get(ctx, scheduledKey, &st)
	return st, found, err
}

// saveScheduled records a successful scheduled run.
func (s *StateStore) saveScheduled(ctx context.Context, st ScheduledState) error {
	return s.Put(ctx, scheduledKey, st)
}

func (s *StateStore) Get(ctx context.Context, key string, v any) (bool, error) {
	var b []byte
	err := s.DB.QueryRow(ctx, `SELECT state FROM backfill_state WHERE key = $1`, key).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read backfill state %s: %w", key, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decode backfill state %s: %w", key, err)
	}
	return true, nil
}

func (s *StateStore) Put(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if _, err := s.DB.Exec(ctx, `INSERT INTO backfill_state (key, state, updated_at) VALUES ($1, $2, now())
		ON CONFLICT (key) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`, key, b); err != nil {
		return fmt.Errorf("write backfill state %s: %w", key, err)
	}
	return nil
}

// heldLock is the scheduled backfill's advisory lock, held by this processor on a connection of
// its own, taken out of the pool for the run. The lock lives as long as that session: a
// processor that dies mid-run frees it with its connection. Its methods are not safe for
// concurrent use.
type heldLock struct {
	conn *pgxpool.Conn
}

// acquireLock takes the lock (pg_try_advisory_lock, which does not wait), or returns
// errLockHeld when another session holds it.
func acquireLock(ctx context.Context, pool *pgxpool.Pool) (*heldLock, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("take the backfill lock: %w", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, BackfillLockKey).Scan(&ok); err != nil {
		discard(conn)
		return nil, fmt.Errorf("take the backfill lock: %w", err)
	}
	if !ok {
		conn.Release()
		return nil, errLockHeld
	}
	return &heldLock{conn: conn}, nil
}

// Check fails when the lock's session no longer answers: its lock is then gone with it.
func (h *heldLock) Check(ctx context.Context) error {
	if err := h.conn.Ping(ctx); err != nil {
		return fmt.Errorf("the backfill lock's connection: %w", err)
	}
	return nil
}

// release unlocks and returns the connection to the pool. A connection that could not unlock is
// closed instead, which frees the lock as well.
func (h *heldLock) release(ctx context.Context) error {
	var ok bool
	err := h.conn.QueryRow(ctx, `SELECT pg_advisory_unlock($1)`, BackfillLockKey).Scan(&ok)
	if err == nil && !ok {
		err = errors.New("the lock was not held")
	}
	if err != nil {
		discard(h.conn)
		return fmt.Errorf("release the backfill lock: %w", err)
	}
	h.conn.Release()
	return nil
}

// discard takes a connection out of the pool and closes it, rather than returning it to the
// pool with its session (and any lock of it) in a state unknown.
func discard(conn *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Hijack().Close(ctx) // closing a broken connection has nothing left to report
}

// Window describes created bounds for people.
func Window(gte, lte int64) string {
	return fmt.Sprintf("created from %s to %s", time.Unix(gte, 0).UTC().Format(time.RFC3339), time.Unix(lte, 0).UTC().Format(time.RFC3339))
}

// StartManual is the checkpoint a manual run (processor backfill) goes on from, and its key: the
// checkpoint of an interrupted run with the same parameters unless restart is set, else a new
// one over the last since, saved at once. say hears which it is.
func (s *StateStore) StartManual(ctx context.Context, sc scope.Scope, since time.Duration, undelivered bool, types []string, restart bool,
	say func(format string, args ...any),
) (string, Checkpoint, error) {
	ctx, cancel := context.WithTimeout(ctx, SetupTimeout)
	defer cancel()
	key, params := CheckpointKey(sc, since, undelivered, types)
	cp, found, err := s.LoadCheckpoint(ctx, key)
	if err != nil {
		return key, cp, err
	}
	if found && !restart {
		say("resuming the run of %s (%s) after event %q, %s so far; --restart starts over",
			cp.StartedAt.Format(time.RFC3339), Window(cp.CreatedGTE, cp.CreatedLTE), cp.StartingAfter, cp.Counts)
		return key, cp, nil
	}
	if found {
		say("--restart: dropping the checkpoint of the run of %s", cp.StartedAt.Format(time.RFC3339))
	}
	now := time.Now().UTC()
	cp = Checkpoint{Params: params, CreatedGTE: now.Add(-since).Unix(), CreatedLTE: now.Unix(), StartedAt: now}
	if err := s.SaveCheckpoint(ctx, key, cp); err != nil {
		return key, cp, err
	}
	say("listing events %s", Window(cp.CreatedGTE, cp.CreatedLTE))
	return key, cp, nil
}

// FinishManual deletes the checkpoint of a manual run that completed, even once ctx is done; a
// failure only leaves the checkpoint, which say hears of.
func (s *StateStore) FinishManual(ctx context.Context, key string, say func(format string, args ...any)) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), SetupTimeout)
	defer cancel()
	if err := s.DeleteCheckpoint(ctx, key); err != nil {
		say("warning: the run is complete but its checkpoint stays: %v", err)
	}
}
