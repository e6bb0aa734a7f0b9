package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Retainer purges applied events from the stream once they have been applied for at least
// Keep. It replaces PurgeApplied where the stream must keep a window of applied history: a
// promoted standby or a restored database that lacks the last commits is given them again by
// reading that window (ReadRetained), which the idempotent event store absorbs.
//
// It remembers the consumer's ack floor at each call with the time it saw it, and purges below
// the newest floor seen at least Keep ago: every message at or below that floor was
// acknowledged (applied and committed, or dead-lettered) no later than then. Keep 0 purges to
// the current floor, as PurgeApplied does. A processor that restarts forgets the floors it saw
// and purges nothing for Keep: it errs on the side of keeping.
//
// The window yields to space: once the stream holds more than half its MaxBytes, it purges to
// the current floor whatever Keep says, so applied events never make the listener refuse a
// webhook (the stream discards new messages when full). Not safe for concurrent use.
type Retainer struct {
	// Keep is how long an event stays after it was applied; 0 purges at once.
	Keep time.Duration
	// Now is the clock; nil is time.Now (tests set it).
	Now func() time.Time

	seen   []floorAt // ack floors seen, oldest first, at most one older than Keep
	purged uint64    // the floor of the last purge
}

type floorAt struct {
	floor uint64
	at    time.Time
}

// Purge removes from the stream what has been applied for at least Keep (or, when the stream
// is over half full, everything applied) and returns the sequence purged below (0 when
// nothing was). On an error the next call purges what this one could not.
func (r *Retainer) Purge(ctx context.Context, js jetstream.JetStream, cons jetstream.Consumer) (uint64, error) {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return r.purged, fmt.Errorf("purge applied events: consumer info: %w", err)
	}
	floor := info.AckFloor.Stream
	t := now()
	if n := len(r.seen); n > 0 && floor < r.seen[n-1].floor {
		// The consumer or the stream was recreated: the old floors mean nothing now.
		r.seen, r.purged = nil, 0
	}
	if n := len(r.seen); floor > 0 && (n == 0 || floor > r.seen[n-1].floor) {
		r.seen = append(r.seen, floorAt{floor, t})
	}
	// The newest floor seen at least Keep ago; older ones are no longer needed.
	var target uint64
	cut := t.Add(-r.Keep)
	i := 0
	for i < len(r.seen) && !r.seen[i].at.After(cut) {
		target = r.seen[i].floor
		i++
	}
	if i > 1 {
		r.seen = r.seen[i-1:]
	}
	var s jetstream.Stream
	if r.Keep > 0 && floor > target {
		// Is the window crowding out new events? (One request a call, only while it keeps any.)
		if s, err = js.Stream(ctx, Name); err != nil {
			return r.purged, fmt.Errorf("purge applied events: stream info: %w", err)
		}
		si := s.CachedInfo()
		if limit := si.Config.MaxBytes; limit > 0 && si.State.Bytes > uint64(limit)/2 {
			target = floor
		}
	}
	if target == 0 || target <= r.purged {
		return r.purged, nil
	}
	if s == nil {
		if s, err = js.Stream(ctx, Name); err != nil {
			return r.purged, fmt.Errorf("purge applied events up to %d: %w", target, err)
		}
	}
	// WARNING: below target+1 (target is acknowledged, target+1 may not be), never past it: a
	// message above the floor may be unapplied, and a purged message is gone.
	if err := s.Purge(ctx, jetstream.WithPurgeSequence(target+1)); err != nil {
		return r.purged, fmt.Errorf("purge applied events up to %d: %w", target, err)
	}
	r.purged = target
	return target, nil
}

// Retained is one message read back from the stream by ReadRetained.
type Retained struct {
	Seq       uint64
	MsgID     string // Nats-Msg-Id: the event id, as the listener publishes it
	Subject   string
	Data      []byte
	Published time.Time // when the stream stored it
}

// ReadRetained calls fn with every message the stream holds now that was stored at or after
// since (the zero time: all), in stream order, up to the last message stored when it was
// called. It reads with an ordered consumer of its own, so the processor's durable consumer is
// not disturbed; messages purged meanwhile are skipped. It returns the number of messages read;
// an error of fn stops it.
func ReadRetained(ctx context.Context, js jetstream.JetStream, since time.Time, fn func(Retained) error) (int, error) {
	s, err := js.Stream(ctx, Name)
	if err != nil {
		return 0, fmt.Errorf("read retained events: %w", err)
	}
	state := s.CachedInfo().State
	if state.Msgs == 0 {
		return 0, nil
	}
	last := state.LastSeq
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{AllSubjects}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return 0, fmt.Errorf("read retained events: ordered consumer: %w", err)
	}
	n := 0
	for {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return n, fmt.Errorf("read retained events after %d: %w", n, err)
		}
		got, done := 0, false
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				return n, fmt.Errorf("read retained events: metadata: %w", err)
			}
			if meta.Sequence.Stream > last {
				done = true
				continue
			}
			n++
			r := Retained{Seq: meta.Sequence.Stream, Subject: m.Subject(), Data: m.Data(), Published: meta.Timestamp}
			if h := m.Headers(); h != nil {
				r.MsgID = h.Get(jetstream.MsgIDHeader)
			}
			if err := fn(r); err != nil {
				return n, err
			}
			if meta.Sequence.Stream == last || meta.NumPending == 0 {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return n, fmt.Errorf("read retained events after %d: %w", n, err)
		}
		if done || got == 0 {
			return n, ctx.Err()
		}
	}
}
