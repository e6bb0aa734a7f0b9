package main

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

	"github.com/nats-io/nats.go/jetstream"
)

// The backfill keeps its state in NATS KV: the listener has NATS, not Postgres.
const (
	// stateBucket holds the checkpoints of interrupted backfills (checkpoint.<hash of the
	// parameters>) and the last successful scheduled run (scheduledKey).
	stateBucket  = "TOLLGATE_BACKFILL"
	scheduledKey = "scheduled.last_success"
	// lockBucket holds the lock of the scheduled backfill. Its keys expire after lockTTL, so the
	// lock of a listener that died mid-run frees itself; a running holder refreshes it.
	lockBucket = "TOLLGATE_BACKFILL_LOCK"
	lockKey    = "scheduled"
	lockTTL    = time.Minute
)

// errLockHeld means another listener holds the scheduled backfill's lock.
var errLockHeld = errors.New("another listener is running the scheduled backfill")

// checkpoint is how far an unfinished backfill got. A run with the same parameters resumes it:
// the same created bounds, after the last event done. StartingAfter is "" until the first
// event was stored.
type checkpoint struct {
	Params        string    `json:"params"`
	CreatedGTE    int64     `json:"created_gte"`
	CreatedLTE    int64     `json:"created_lte"`
	StartingAfter string    `json:"starting_after"`
	Counts        counts    `json:"counts"`
	StartedAt     time.Time `json:"started_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// scheduledState is the last successful scheduled backfill of any listener.
type scheduledState struct {
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Instance   string    `json:"instance"`
	Counts     counts    `json:"counts"`
}

// checkpointKey names the checkpoint of a backfill by its parameters, so that running the same
// command again finds it: since as given (relative, not the absolute bounds, which the checkpoint
// keeps), the undelivered filter and the set of types.
func checkpointKey(since time.Duration, undelivered bool, types []string) (key, params string) {
	ts := slices.Clone(types)
	slices.Sort(ts)
	ts = slices.Compact(ts)
	params = fmt.Sprintf("since=%s undelivered=%t types=%s", shortDuration(since), undelivered, strings.Join(ts, ","))
	sum := sha256.Sum256([]byte(params))
	return "checkpoint." + hex.EncodeToString(sum[:8]), params
}

// stateStore reads and writes the backfill's state in stateBucket.
type stateStore struct {
	kv jetstream.KeyValue
}

// openStateStore creates or updates the state bucket.
func openStateStore(ctx context.Context, js jetstream.JetStream) (*stateStore, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      stateBucket,
		Description: "Tollgate backfill: checkpoints of interrupted runs, the last successful scheduled run",
		History:     1,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("NATS KV bucket %s: %w", stateBucket, err)
	}
	return &stateStore{kv: kv}, nil
}

// loadCheckpoint reads the checkpoint under key; found is false when there is none.
func (s *stateStore) loadCheckpoint(ctx context.Context, key string) (cp checkpoint, found bool, err error) {
	found, err = s.get(ctx, key, &cp)
	return cp, found, err
}

// saveCheckpoint writes cp under key.
func (s *stateStore) saveCheckpoint(ctx context.Context, key string, cp checkpoint) error {
	cp.UpdatedAt = time.Now().UTC()
	return s.put(ctx, key, cp)
}

// deleteCheckpoint removes the checkpoint under key: the run it belonged to is complete.
func (s *stateStore) deleteCheckpoint(ctx context.Context, key string) error {
	if err := s.kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete backfill checkpoint %s: %w", key, err)
	}
	return nil
}

// lastScheduled reads the last successful scheduled run; found is false before the first.
func (s *stateStore) lastScheduled(ctx context.Context) (st scheduledState, found bool, err error) {
	found, err = s.get(ctx, scheduledKey, &st)
	return st, found, err
}

// saveScheduled records a successful scheduled run.
func (s *stateStore) saveScheduled(ctx context.Context, st scheduledState) error {
	return s.put(ctx, scheduledKey, st)
}

func (s *stateStore) get(ctx context.Context, key string, v any) (bool, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s from NATS KV %s: %w", key, stateBucket, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return false, fmt.Errorf("decode %s from NATS KV %s: %w", key, stateBucket, err)
	}
	return true, nil
}

func (s *stateStore) put(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if _, err := s.kv.Put(ctx, key, b); err != nil {
		return fmt.Errorf("write %s to NATS KV %s: %w", key, stateBucket, err)
	}
	return nil
}

// lock is the scheduled backfill's lock: one key in lockBucket, created with kv.Create, which
// fails while the key exists, so one listener holds it at a time.
type lock struct {
	kv    jetstream.KeyValue
	owner string // this listener, as the key's value (for people reading the bucket)
}

// openLock creates or updates the lock bucket, whose keys expire lockTTL after their last write.
func openLock(ctx context.Context, js jetstream.JetStream, owner string) (*lock, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      lockBucket,
		Description: "Tollgate backfill: the lock of the scheduled run, one listener at a time",
		History:     1,
		TTL:         lockTTL,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("NATS KV bucket %s: %w", lockBucket, err)
	}
	return &lock{kv: kv, owner: owner}, nil
}

// acquire takes the lock, or returns errLockHeld when another listener holds it.
func (l *lock) acquire(ctx context.Context) (*heldLock, error) {
	rev, err := l.kv.Create(ctx, lockKey, []byte(l.owner))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil, errLockHeld
	}
	if err != nil {
		return nil, fmt.Errorf("take the backfill lock: %w", err)
	}
	return &heldLock{kv: l.kv, owner: l.owner, rev: rev}, nil
}

// heldLock is a lock this listener holds. Its methods are not safe for concurrent use.
type heldLock struct {
	kv    jetstream.KeyValue
	owner string
	rev   uint64
}

// refresh writes the lock again so it does not expire during a long run. It fails when the lock
// is no longer this listener's (it expired and another took it).
func (h *heldLock) refresh(ctx context.Context) error {
	rev, err := h.kv.Update(ctx, lockKey, []byte(h.owner), h.rev)
	if err != nil {
		return fmt.Errorf("refresh the backfill lock: %w", err)
	}
	h.rev = rev
	return nil
}

// release deletes the lock if it is still this listener's.
func (h *heldLock) release(ctx context.Context) error {
	if err := h.kv.Delete(ctx, lockKey, jetstream.LastRevision(h.rev)); err != nil {
		return fmt.Errorf("release the backfill lock: %w", err)
	}
	return nil
}
