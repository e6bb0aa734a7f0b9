package operate

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/outbox"
	"github.com/tollgate/tollgate/pkg/repair"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/processor/internal/backfill"
	"github.com/tollgate/tollgate/processor/internal/ingest"
	"github.com/tollgate/tollgate/processor/internal/reconcile"
)

// PipelineStatus is the state of the pipeline as an operator sees it (the console's pipeline
// page); a part that could not be read names its error.
type PipelineStatus struct {
	ReadAt            time.Time     // when it was read
	AckFloor          uint64        // the stream sequence up to which every event is applied
	OldestAge         time.Duration // how long the oldest unapplied event has waited; 0 when none
	Pending           uint64
	AckPending        int
	ConsumerErr       string
	StreamMsgs, Bytes uint64
	MaxBytes          int64
	OldestUnapplied   string
	StreamErr         string
	DeadLetters       int64
	Notify            outbox.Stats
	NotifyErr         string
	Repairs           map[string]int
	RepairsErr        string
	Backfill          *backfill.ScheduledState
	BackfillErr       string
	Reconcile         *reconcile.State
	ReconcileErr      string
}

// Pipeline reads the pipeline's state: the consumer's backlog, the stream, the dead letters,
// the notifications, the open repairs and the last scheduled backfill and reconcile. A part that
// cannot be read names its error instead; js may be nil (no stream part).
func Pipeline(ctx context.Context, db *pgxpool.Pool, js jetstream.JetStream) PipelineStatus {
	p := PipelineStatus{ReadAt: time.Now()}
	if js != nil {
		var ackFloor uint64 // every message at or below it is applied (or dead-lettered)
		if cons, err := js.Consumer(ctx, stream.Name, ingest.Durable); err == nil {
			if info, err := cons.Info(ctx); err == nil {
				p.Pending, p.AckPending, ackFloor = info.NumPending, info.NumAckPending, info.AckFloor.Stream
				p.AckFloor = ackFloor
			} else {
				p.ConsumerErr = err.Error()
			}
		} else {
			p.ConsumerErr = err.Error()
		}
		if s, err := js.Stream(ctx, stream.Name); err == nil {
			info := s.CachedInfo()
			p.StreamMsgs, p.Bytes, p.MaxBytes = info.State.Msgs, info.State.Bytes, info.Config.MaxBytes
			p.OldestUnapplied = "none"
			if oldest, err := ingest.OldestUnapplied(ctx, s, ackFloor); err != nil {
				p.OldestUnapplied = err.Error()
			} else if !oldest.IsZero() {
				p.OldestAge = p.ReadAt.Sub(oldest)
				p.OldestUnapplied = oldest.UTC().Format(time.RFC3339) + " (" + time.Since(oldest).Round(time.Second).String() + " ago)"
			}
		} else {
			p.StreamErr = err.Error()
		}
	}
	p.DeadLetters, _ = eventstore.CountDeadLetters(ctx, db)
	var err error
	if p.Notify, err = outbox.Count(ctx, db); err != nil {
		p.NotifyErr = err.Error()
	}
	if p.Repairs, err = repair.CountOpen(ctx, db); err != nil {
		p.RepairsErr = err.Error()
	}
	st := &backfill.StateStore{DB: db}
	if b, found, err := st.LastScheduled(ctx); err != nil {
		p.BackfillErr = err.Error()
	} else if found {
		p.Backfill = &b
	}
	if rc, found, err := reconcile.Last(ctx, st); err != nil {
		p.ReconcileErr = err.Error()
	} else if found {
		p.Reconcile = &rc
	}
	return p
}
