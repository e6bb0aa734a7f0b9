package operate

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/processor/internal/service"
)

// HistoryEvery is how often KeepHistory samples the pipeline; HistoryWindow how long it keeps
// the samples (the pipeline page's charts show that window).
const (
	HistoryEvery  = 30 * time.Second
	HistoryWindow = time.Hour
)

// Sample is one reading of the pipeline, for the pipeline page's charts.
type Sample struct {
	At            time.Time
	AckFloor      uint64  // the stream sequence every event up to which is applied: its rise is events applied
	Pending       float64 // consumer lag: events not yet delivered
	OldestAge     float64 // seconds the oldest unapplied event has waited (0: none)
	NotifyPending float64
	DeadLetters   float64
}

// History keeps the samples of the last HistoryWindow in memory (a restart starts it afresh);
// safe for concurrent use.
type History struct {
	mu  sync.Mutex
	buf []Sample
}

// Add records s, dropping the samples older than the window before it.
func (h *History) Add(s Sample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf = append(h.buf, s)
	cut := 0
	for cut < len(h.buf) && s.At.Sub(h.buf[cut].At) > HistoryWindow {
		cut++
	}
	h.buf = append(h.buf[:0], h.buf[cut:]...)
}

// Samples is a copy of the kept samples, oldest first.
func (h *History) Samples() []Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Sample(nil), h.buf...)
}

// KeepHistory samples the pipeline into h every HistoryEvery until ctx ends.
func KeepHistory(ctx context.Context, db *pgxpool.Pool, js jetstream.JetStream, h *History) {
	service.Every(ctx, HistoryEvery, func(ctx context.Context) {
		p := Pipeline(ctx, db, js)
		h.Add(Sample{At: p.ReadAt, AckFloor: p.AckFloor, Pending: float64(p.Pending), OldestAge: p.OldestAge.Seconds(),
			NotifyPending: float64(p.Notify.Pending), DeadLetters: float64(p.DeadLetters)})
	})
}
