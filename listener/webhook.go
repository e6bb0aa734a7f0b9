package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/tollgate/tollgate/pkg/httpx"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/pkg/stripeevent"
)

// natsHeaderRoom is what the body limit keeps free under the server's max_payload for the
// message headers (Nats-Msg-Id with the event id, Nats-Expected-Stream): about 80 bytes plus
// the id. A longer id still gets a 413, from nats.ErrMaxPayload.
const natsHeaderRoom = 1024

// The reasons a webhook is refused. refusal maps each to its status and contract code.
var (
	errTooLarge         = errors.New("body too large")
	errUnreadable       = errors.New("body could not be read")
	errInvalidSignature = errors.New("no valid signature")
	errTooOld           = errors.New("signature timestamp outside tolerance")
	errNATSDown         = errors.New("nats: not connected")
	errOverloaded       = errors.New("too many webhook bodies in flight")
)

// maxBodiesInFlight bounds the bodies being read or handled at once, and with MAX_BODY_BYTES
// the memory spent before a signature is checked (128 MiB at the default 1 MiB). Past it a
// webhook gets 503 overloaded at once, with Retry-After, rather than queueing.
const maxBodiesInFlight = 128

type webhookAnswer struct {
	Received  bool `json:"received"`
	Duplicate bool `json:"duplicate"`
}

// handleWebhook answers POST /webhooks/stripe as the contract's listener table says.
func (s *server) handleWebhook(w http.ResponseWriter, r *http.Request) {
	s.metrics.inFlight.Inc()
	defer s.metrics.inFlight.Dec()

	ack, ev, err := s.acceptBounded(w, r)
	if err != nil {
		status, code, msg := refusal(err)
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		s.metrics.requests.WithLabelValues(strconv.Itoa(status), code).Inc()
		attrs := []any{"status", status, "code", code, "error", err}
		if ev.ID != "" {
			attrs = append(attrs, "event", ev.ID, "type", ev.Type)
		}
		s.logger.Log(r.Context(), slogLevel(status), "webhook refused", attrs...)
		httpx.WriteError(w, status, code, msg)
		return
	}
	if ack.Duplicate {
		s.metrics.duplicates.Inc()
	}
	s.metrics.received.Inc()
	if s.logger.Enabled(r.Context(), slog.LevelDebug) { // no attribute slice per request otherwise
		s.logger.Debug("webhook stored", "event", ev.ID, "type", ev.Type, "customer", ev.CustomerID, "seq", ack.Sequence, "duplicate", ack.Duplicate)
	}
	httpx.WriteJSON(w, http.StatusOK, webhookAnswer{Received: true, Duplicate: ack.Duplicate})
}

// acceptBounded is accept within a slot of bodySlots, or errOverloaded when none is free.
func (s *server) acceptBounded(w http.ResponseWriter, r *http.Request) (*jetstream.PubAck, stripeevent.Event, error) {
	select {
	case s.bodySlots <- struct{}{}:
		defer func() { <-s.bodySlots }()
	default:
		w.Header().Set("Connection", "close")
		return nil, stripeevent.Event{}, fmt.Errorf("%w (%d)", errOverloaded, cap(s.bodySlots))
	}
	return s.accept(w, r)
}

// accept reads, verifies and stores one webhook. It returns JetStream's acknowledgment, or an
// error for refusal to map. ev is filled as far as it was parsed, for logs.
func (s *server) accept(w http.ResponseWriter, r *http.Request) (ack *jetstream.PubAck, ev stripeevent.Event, err error) {
	buf := s.bodies.get()
	defer func() {
		// The event's byte fields alias buf, which the next request reuses: only its strings
		// (id, type, customer) leave accept, for the caller's logs.
		ev.Raw, ev.Object, ev.PreviousAttributes = nil, nil, nil
		s.bodies.put(buf)
	}()
	body, err := readBody(w, r, s.bodyLimit(), buf)
	if err != nil {
		return nil, stripeevent.Event{}, err
	}
	if err := verifySignature(body, r.Header.Get("Stripe-Signature"), s.secrets, s.tolerance); err != nil {
		return nil, stripeevent.Event{}, err
	}
	// stripeevent reads only the envelope every API version shares: any api_version is taken.
	ev, err = stripeevent.Parse(body)
	if err != nil {
		return nil, ev, err
	}
	// Fields the queue or the store cannot hold (a 5,000-byte customer id, a NUL in the id, a
	// year-10000 created) are refused here, with the field named, and nothing is published.
	if err := stripeevent.Validate(ev, time.Now()); err != nil {
		return nil, stripeevent.Event{}, err
	}

	if !s.nc.IsConnected() {
		return nil, ev, fmt.Errorf("publish event %s: %w", ev.ID, errNATSDown) // fail fast, clear log
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.publishTimeout)
	defer cancel()
	start := time.Now()
	// WARNING: the 200 is written by the caller only after this returns a PubAck, i.e. after
	// JetStream stored the event. Answering before the publish returns (or publishing
	// asynchronously) would tell Stripe to stop retrying an event that may be lost.
	ack, err = stream.Publish(ctx, s.js, ev) // the processor's backfill stores events the same way
	s.metrics.publish.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, ev, err
	}
	return ack, ev, nil
}

// bodyLimit is the largest body that is accepted: MAX_BODY_BYTES, or less when the NATS server
// would not take it as one message. It is read per request: a reconnect may reach a server with
// another max_payload.
func (s *server) bodyLimit() int64 {
	limit := s.maxBodyBytes
	if room := s.nc.MaxPayload() - natsHeaderRoom; room > 0 && room < limit {
		limit = room
	}
	return limit
}

// readBody reads the whole body into buf (empty), refusing more than limit bytes, and returns
// buf's bytes. A Content-Length over the limit is refused before a byte is read. The buffer grows
// as bytes arrive, never from the Content-Length, which is the client's claim: connections that
// send only headers would otherwise reserve a megabyte each before any signature is checked.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, buf *bytes.Buffer) ([]byte, error) {
	if r.ContentLength > limit {
		w.Header().Set("Connection", "close") // the unread body is not worth draining
		return nil, fmt.Errorf("%w: Content-Length %d is over the limit of %d bytes", errTooLarge, r.ContentLength, limit)
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit)); err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return nil, fmt.Errorf("%w: over the limit of %d bytes", errTooLarge, limit)
		}
		return nil, fmt.Errorf("%w: %w", errUnreadable, err)
	}
	return buf.Bytes(), nil
}

// verifySignature checks the Stripe-Signature header against every secret (several during a
// rotation) with stripe-go's webhook package. It returns nil when one secret signed payload
// within tolerance, an error wrapping errTooOld when one secret signed it but too long ago, and
// one wrapping errInvalidSignature otherwise.
//
// It verifies the signature only. webhook.ConstructEvent* would also decode the body into
// stripe-go's Event, which fails on events of API versions before 2017-05-25 ("request" was a
// string) and would refuse them; stripeevent.Parse decodes any version.
func verifySignature(payload []byte, header string, secrets []string, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = webhook.DefaultTolerance // as ConstructEventOptions does with a zero Tolerance
	}
	last := errors.New("no secret configured")
	for _, secret := range secrets {
		err := webhook.ValidatePayloadWithTolerance(payload, header, secret, tolerance)
		switch {
		case err == nil:
			// stripe-go bounds only the age: a timestamp far ahead would be accepted (and a
			// captured signature stay replayable for years).
			if ts, ok := signatureTime(header); ok && ts.After(time.Now().Add(tolerance)) {
				return fmt.Errorf("%w (%s): signed %s in the future", errTooOld, tolerance, time.Until(ts).Round(time.Second))
			}
			return nil
		case errors.Is(err, webhook.ErrNotSigned), errors.Is(err, webhook.ErrInvalidHeader):
			return fmt.Errorf("%w: %w", errInvalidSignature, err) // the same for every secret
		case errors.Is(err, webhook.ErrTooOld):
			// stripe-go checks the age before the signature: an old timestamp counts only when
			// the signature itself is good, else it is just a bad signature.
			if webhook.ValidatePayloadIgnoringTolerance(payload, header, secret) == nil {
				return fmt.Errorf("%w (%s)", errTooOld, tolerance)
			}
			err = webhook.ErrNoValidSignature
		}
		last = err
	}
	return fmt.Errorf("%w: no configured secret matches (%w)", errInvalidSignature, last)
}

// signatureTime reads the t= of a Stripe-Signature header.
func signatureTime(header string) (time.Time, bool) {
	for part := range strings.SplitSeq(header, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "t="); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return time.Time{}, false
			}
			return time.Unix(n, 0), true
		}
	}
	return time.Time{}, false
}

// refusal is the one map from a refused webhook's error to its HTTP status, contract code and
// the message sent back. Anything not recognised is a failure to store: 503, Stripe retries.
func refusal(err error) (status int, code, message string) {
	switch {
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge, "payload_too_large", err.Error()
	case errors.Is(err, nats.ErrMaxPayload):
		return http.StatusRequestEntityTooLarge, "payload_too_large", "the event is larger than the NATS server's max_payload"
	case errors.Is(err, errOverloaded):
		return http.StatusServiceUnavailable, "overloaded", "too many webhooks in flight; retry later"
	case errors.Is(err, errInvalidSignature):
		return http.StatusBadRequest, "invalid_signature", err.Error()
	case errors.Is(err, errTooOld):
		return http.StatusBadRequest, "timestamp_outside_tolerance", err.Error()
	case errors.Is(err, stripeevent.ErrInvalid), errors.Is(err, errUnreadable):
		return http.StatusBadRequest, "invalid_payload", err.Error()
	default:
		return http.StatusServiceUnavailable, "queue_unavailable", "the event could not be stored; retry later"
	}
}

func slogLevel(status int) slog.Level {
	if status >= 500 {
		return slog.LevelError
	}
	return slog.LevelWarn
}
