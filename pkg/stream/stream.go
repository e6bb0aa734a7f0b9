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

	// DuplicateWindow is how long JetStream remembers a Nats-Msg-Id. Stripe retries a failed
	// delivery with exponential backoff for up to 3 days in live mode, so the window covers the
	// whole retry period and a retry is answered duplicate:true. The ids are kept in the server's
	// memory (roughly 100 bytes an event). Past the window the event store's primary key is the
	// permanent dedupe.
	DuplicateWindow = 72 * time.Hour
	// DefaultMaxBytes caps the stream's disk use. The stream is a work queue (see Config): it
	// holds only events the processor has not applied yet, so it fills only while the processor
	// is down or failing for long. It then discards NEW messages: publishes fail, the listener
	// answers 503 and Stripe retries, rather than unapplied events being dropped silently.
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
	// WorkQueuePolicy: a message leaves the stream once the processor's durable consumer acked
	// it (applied and committed, or dead-lettered), so applied events never fill the stream; the
	// event store is the history. Unlike InterestPolicy it keeps messages while no consumer
	// exists yet (a listener started before any processor loses nothing), and it refuses a
	// second consumer over the same subjects, which would steal events from the processor.
	// Dedupe does not need the messages: the server keeps the Nats-Msg-Ids of the last
	// DuplicateWindow whether or not their messages are still stored, while it runs (a
	// restarted server, or a replica that becomes leader, rebuilds them from the messages it
	// holds; the event store's primary key dedupes the rest). No MaxAge: an unapplied
	// event is never dropped for its age.
	return jetstream.StreamConfig{
		Name:        Name,
		Description: "Stripe webhook events accepted by the Tollgate listener and not yet applied by the processor, raw bytes, Nats-Msg-Id = event id",
		Subjects:    []string{AllSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.WorkQueuePolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    opts.MaxBytes,
		Duplicates:  DuplicateWindow,
		Replicas:    opts.Replicas,
		// Every event is one message; no per-subject limit may drop history.
		MaxMsgsPerSubject: -1,
		MaxMsgs:           -1,
	}
}

// Ensure creates the stream or updates it to Config(opts). It is idempotent and safe to call from
// every process at start.
//
// A stream of an earlier release (LimitsPolicy, 30 days) cannot be changed to a work queue in
// place: nats-server refuses to change a stream's retention. Ensure then leaves it as it is and
// returns it (Legacy reports it): the listener goes on publishing to it and the processor
// converts it with MigrateToWorkQueue once it has applied what it holds.
func Ensure(ctx context.Context, js jetstream.JetStream, opts Options) (jetstream.Stream, error) {
	existing, err := js.Stream(ctx, Name)
	switch {
	case err == nil:
		cfg := existing.CachedInfo().Config
		if Legacy(cfg) {
			return existing, nil
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
