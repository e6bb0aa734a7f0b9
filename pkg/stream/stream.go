// Package stream is the one place that names Tollgate's JetStream stream and its subjects and
// defines the stream's settings.
//
// Subjects carry the customer id: stripe.events.<customer>.<event type>, with "_none" for events
// that belong to no customer. A later scale-out can partition consumers by customer with a
// subject transform on the second token, and `nats sub 'stripe.events.cus_123.>'` shows one
// customer's traffic.
package stream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

const (
	// Name is the JetStream stream that holds every Stripe event Tollgate accepted.
	Name = "STRIPE_EVENTS"
	// SubjectPrefix starts every subject of the stream.
	SubjectPrefix = "stripe.events"
	// AllSubjects matches every subject of the stream.
	AllSubjects = SubjectPrefix + ".>"
	// NoCustomer stands in the customer token for events of no customer.
	NoCustomer = "_none"

	// DuplicateWindow is how long JetStream remembers a Nats-Msg-Id, and it is sized by the
	// memory that costs, not by Stripe's 3-day retry period: the server keeps every id of the
	// window in memory whatever is purged, about 100 bytes of heap each (BenchmarkDuplicateWindowMemory;
	// about 200 bytes of resident memory with the garbage collector's headroom). An hour holds
	// 360,000 ids at a sustained 100 events/s, about 36 MB of heap (72 MB resident); 72 hours
	// held 2.6 GB of heap (5 GB resident) at that rate. The window covers what dedupe in the queue
	// is for: the listener's own publish retries and Stripe's redeliveries of the same minutes,
	// answered duplicate:true. Past it the event store's primary key is the permanent dedupe: a
	// later retry is stored once and applied once, only answered duplicate:false.
	DuplicateWindow = time.Hour
	// DefaultMaxBytes caps the stream's disk use. The stream holds only events the processor
	// has not applied yet (see Config), so it fills only while the processor is down or failing
	// for long. It then discards NEW messages: publishes fail, the listener answers 503 and
	// Stripe retries, rather than unapplied events being dropped silently.
	DefaultMaxBytes = 10 << 30
)

// Options are the operator's choices for the stream. Zero values keep what an existing stream
// has (an operator may have run `nats stream edit STRIPE_EVENTS --replicas 3 --max-bytes ...`),
// and give the defaults to a new one.
type Options struct {
	// Replicas is the number of copies in a NATS cluster (1, 3 or 5). Default 1.
	Replicas int
	// MaxBytes caps the stream's size on disk; -1 is no cap. Default DefaultMaxBytes.
	MaxBytes int64
}

// Config is the stream's configuration for the given options.
func Config(opts Options) jetstream.StreamConfig {
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	switch {
	case opts.MaxBytes == 0:
		opts.MaxBytes = DefaultMaxBytes
	case opts.MaxBytes < 0:
		opts.MaxBytes = -1
	}
	// LimitsPolicy, purged by the processor up to its durable consumer's ack floor after each
	// batch (and when idle): every message at or below the floor is acknowledged (applied and
	// committed, or dead-lettered), so the stream holds what is not yet applied plus at most the
	// batch in flight; the event store is the history.
	//
	// Not WorkQueuePolicy, which removes each message on its ack: under `sync_interval: always`
	// (docker-compose.yml, the bench; durability against power loss) nats-server fsyncs every
	// removal, so every ack cost an fsync. Measured in one run: BenchmarkAckSyncAlways, 1,575
	// msgs/s as a work queue, 27,356 msgs/s with limits and one purge per batch of 1,000; the
	// processor's drain benchmark with SyncAlways, 1,378 events/s as a work queue, 4,749 purged.
	// A purge is one removal (one fsync) per batch. Not InterestPolicy either: it drops messages
	// published while no consumer exists yet (a listener started before any processor would
	// lose events).
	//
	// Dedupe does not need the messages: the server keeps the Nats-Msg-Ids of the last
	// DuplicateWindow whatever is purged, while it runs (a restarted server, or a replica that
	// becomes leader, rebuilds them from the messages it still holds); the event store's primary
	// key dedupes the rest. No MaxAge: an unapplied event is never dropped for its age.
	return jetstream.StreamConfig{
		Name:        Name,
		Description: "Stripe webhook events accepted by the Tollgate listener and not yet applied by the processor, raw bytes, Nats-Msg-Id = event id",
		Subjects:    []string{AllSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    opts.MaxBytes,
		Duplicates:  DuplicateWindow,
		Replicas:    opts.Replicas,
		// Every event is one message; no per-subject limit may drop history.
		MaxMsgsPerSubject: -1,
		MaxMsgs:           -1,
	}
}

// ErrWorkQueue is returned by Ensure for a stream with work-queue retention, which only a
// development build of Tollgate created: nats-server refuses to change a stream's retention to
// or from a work queue, so it cannot be updated in place.
var ErrWorkQueue = errors.New("stream " + Name + " is a work queue (a development build of Tollgate): " +
	"let the processor drain it, stop the listener, delete it (`nats stream rm " + Name + "`) and start again: Tollgate recreates it")

// Ensure creates the stream or updates it in place to Config(opts), keeping the operator's
// replicas and size limit where opts leaves them unset (see Options). It is idempotent and safe
// to call from every process at start, concurrently: the update only relaxes limits or sets what
// the operator asked for, and never removes a message. A stream of an earlier release (limits
// retention, MaxAge 30 days, 10 GiB) is updated in place: MaxAge 0, the rest unchanged.
//
// A work-queue stream (ErrWorkQueue) is returned as it is with the error.
func Ensure(ctx context.Context, js jetstream.JetStream, opts Options) (jetstream.Stream, error) {
	existing, err := js.Stream(ctx, Name)
	switch {
	case err == nil:
		cfg := existing.CachedInfo().Config
		if cfg.Retention == jetstream.WorkQueuePolicy {
			return existing, ErrWorkQueue
		}
		opts = keepOperatorSettings(opts, cfg)
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("ensure stream %s: %w", Name, err)
	}
	s, err := js.CreateOrUpdateStream(ctx, Config(opts))
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", Name, err)
	}
	return s, nil
}

// keepOperatorSettings fills unset options from the existing stream's configuration, so a
// process starting never scales a replicated stream down or shrinks its size limit.
func keepOperatorSettings(opts Options, existing jetstream.StreamConfig) Options {
	if opts.Replicas <= 0 {
		opts.Replicas = existing.Replicas
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = existing.MaxBytes
	}
	return opts
}

// Subject is the subject an event of the customer is published on. The customer id is reduced to
// the characters a subject token may hold (Stripe ids already are); "" becomes NoCustomer.
// The event type's dots make further tokens. Whatever the input, the subject stays short (at
// most about 400 bytes, far below the server's 4,096-byte protocol line): a customer token over
// maxToken bytes and a type over maxType bytes are replaced by a hash of themselves.
func Subject(customerID, eventType string) string {
	return SubjectPrefix + "." + token(customerID, NoCustomer) + "." + typeTokens(eventType)
}

// maxToken and maxType bound the customer token and the type part of a subject. A subject
// longer than the server's protocol line makes it close the connection.
const (
	maxToken = 128
	maxType  = 255
)

// hashed stands for a value too long for a subject: "_h" and 128 bits of its SHA-256.
func hashed(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "_h" + hex.EncodeToString(sum[:16])
}

func token(s, empty string) string {
	if s == "" {
		return empty
	}
	if len(s) > maxToken {
		return hashed(s)
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, s)
}

// typeTokens keeps the dots of an event type as token separators but makes each part a valid token.
func typeTokens(t string) string {
	if len(t) > maxType {
		return hashed(t)
	}
	parts := strings.Split(t, ".")
	for i, p := range parts {
		parts[i] = token(p, "_")
	}
	return strings.Join(parts, ".")
}
