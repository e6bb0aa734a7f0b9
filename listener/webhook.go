package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/tollgate/tollgate/pkg/config"
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
	errSlowBody         = errors.New("body arrived too slowly")
	errLivemodeMismatch = errors.New("signed only by secrets bound to the other mode")
)

// maxBodiesInFlight times MAX_BODY_BYTES is the budget of the bodies being read or handled at
// once (128 MiB at the default 1 MiB): the memory spent before a signature is checked. A body is
// charged for the bytes buffered for it as they arrive (bodyChunk at a time), not for the
// connection: a client that sends headers and then trickles holds a few KiB, not a full slot,
// so no number of slow clients takes the room Stripe's deliveries need. Past the budget a webhook
// gets 503 overloaded at once, with Retry-After, rather than queueing.
const maxBodiesInFlight = 128

// bodyChunk is the first reservation of a body and the smallest step it grows by.
const bodyChunk = 4 << 10

// A body must arrive at a minimum pace: within bodyGrace, plus one second per minBodyRate bytes
// received, and never later than maxBodyTime after the handler began reading it. Stripe sends a
// whole body at once from a data centre; a client trickling a byte every few seconds is cut off
// after bodyGrace with 408 and its reservation is released. The deadline is the connection's
// read deadline, so a Read blocked on a silent client returns as soon as it passes.
const (
	bodyGrace   = 5 * time.Second
	minBodyRate = 64 << 10 // bytes per second
	maxBodyTime = 30 * time.Second
)

// byteBudget is a bound on bytes held at once; reserve and release are safe for concurrent use.
type byteBudget struct {
	limit int64
	used  atomic.Int64
}

// reserve takes n bytes of the budget and reports whether they were free.
func (b *byteBudget) reserve(n int64) bool {
	for {
		used := b.used.Load()
		if used+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

func (b *byteBudget) release(n int64) { b.used.Add(-n) }

type webhookAnswer struct {
	Received  bool `json:"received"`
	Duplicate bool `json:"duplicate"`
}

// handleWebhook answers POST /webhooks/stripe as the contract's listener table says.
func (s *server) handleWebhook(w http.ResponseWriter, r *http.Request) {
	s.metrics.inFlight.Inc()
	defer s.metrics.inFlight.Dec()

	ack, ev, err := s.accept(w, r)
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

// accept reads, verifies and stores one webhook. It returns JetStream's acknowledgment, or an
// error for refusal to map. ev is filled as far as it was parsed, for logs.
func (s *server) accept(w http.ResponseWriter, r *http.Request) (ack *jetstream.PubAck, ev stripeevent.Event, err error) {
	buf := s.bodies.get()
	body, reserved, err := readBody(w, r, s.bodyLimit(), buf, s.budget)
	defer func() {
		// The body is held until the publish returned. The event's byte fields alias buf, which
		// the next request reuses: only its strings (id, type, customer) leave accept, for the
		// caller's logs.
		s.budget.release(reserved)
		ev.Raw, ev.Object, ev.PreviousAttributes = nil, nil, nil
		s.bodies.put(buf)
	}()
	if err != nil {
		return nil, stripeevent.Event{}, err
	}
	signers, err := verifySignature(body, r.Header.Get("Stripe-Signature"), s.secrets, s.tolerance)
	if err != nil {
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
	// Snapshot events are made by the processor from objects it fetched with its own key; one
	// arriving here is a forgery however well signed, and would be applied as if fetched.
	if err := stripeevent.ValidateFromStripe(ev); err != nil {
		return nil, ev, err
	}
	// A Stripe endpoint belongs to one mode: a test endpoint's secret (often handled loosely)
	// must not sign a live event.
	if !signers.allow(ev.Livemode) {
		return nil, ev, fmt.Errorf("%w: the event has livemode %t and %s", errLivemodeMismatch, ev.Livemode, signers)
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
// buf's bytes with the bytes of budget reserved for it, which the caller releases once done with
// the body (also on error). A Content-Length over the limit is refused before a byte is read. The
// body is charged as it arrives, never from the Content-Length, which is the client's claim, and
// every growth is reserved from budget first (errOverloaded when it is spent), whatever the
// pooled buffer's capacity already is. The body must arrive at the pace of bodyGrace and
// minBodyRate (errSlowBody otherwise, and the connection is closed).
func readBody(w http.ResponseWriter, r *http.Request, limit int64, buf *bytes.Buffer, budget *byteBudget) (body []byte, reserved int64, err error) {
	if r.ContentLength > limit {
		w.Header().Set("Connection", "close") // the unread body is not worth draining
		return nil, 0, fmt.Errorf("%w: Content-Length %d is over the limit of %d bytes", errTooLarge, r.ContentLength, limit)
	}
	first := int64(bodyChunk)
	if r.ContentLength >= 0 && r.ContentLength < first {
		first = r.ContentLength + 1 // room for the EOF read
	}
	if !budget.reserve(first) {
		w.Header().Set("Connection", "close")
		return nil, 0, fmt.Errorf("%w (%d bytes buffered)", errOverloaded, budget.used.Load())
	}
	reserved = first
	buf.Grow(int(first))

	rc := http.NewResponseController(w)
	start := time.Now()
	deadline := func(received int) time.Time {
		d := bodyGrace + time.Duration(received)*time.Second/minBodyRate
		return start.Add(min(d, maxBodyTime))
	}
	// ErrNotSupported (a handler not served by net/http's server) leaves the server's timeouts.
	_ = rc.SetReadDeadline(deadline(0))
	// WARNING: the deadline must be lifted once the body is read: net/http reads the connection
	// in the background while the handler runs, and a deadline passing during the publish would
	// cancel the request's context and lose a 200 for a stored event.
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()

	src := http.MaxBytesReader(w, r.Body, limit)
	for {
		// reserved is how far buf may fill before more of the budget is charged; the pooled
		// buffer's own capacity may be larger, and is not what a request is charged for.
		if int64(buf.Len()) == reserved {
			grow := max(reserved, bodyChunk)
			grow = min(grow, limit+1-reserved) // never past limit+1: one byte more is an error anyway
			if grow <= 0 {
				grow = 1
			}
			if !budget.reserve(grow) {
				w.Header().Set("Connection", "close")
				return nil, reserved, fmt.Errorf("%w (%d bytes buffered)", errOverloaded, budget.used.Load())
			}
			reserved += grow
			buf.Grow(int(grow))
		}
		room := buf.AvailableBuffer()[:reserved-int64(buf.Len())]
		n, rerr := src.Read(room)
		buf.Write(room[:n]) // no copy: room is buf's own free space
		if rerr == io.EOF {
			return buf.Bytes(), reserved, nil
		}
		if rerr != nil {
			if mbe := (*http.MaxBytesError)(nil); errors.As(rerr, &mbe) {
				return nil, reserved, fmt.Errorf("%w: over the limit of %d bytes", errTooLarge, limit)
			}
			if ne := net.Error(nil); errors.As(rerr, &ne) && ne.Timeout() {
				w.Header().Set("Connection", "close")
				return nil, reserved, fmt.Errorf("%w: %d bytes in %s (at least %d bytes/s after %s are needed)",
					errSlowBody, buf.Len(), time.Since(start).Round(time.Millisecond), minBodyRate, bodyGrace)
			}
			return nil, reserved, fmt.Errorf("%w: %w", errUnreadable, rerr)
		}
		if n > 0 {
			_ = rc.SetReadDeadline(deadline(buf.Len()))
		}
	}
}

// signers are the modes of the configured secrets whose signature matched a payload.
type signers struct{ unbound, live, test bool }

// allow reports whether one of the matching secrets may sign an event of that mode.
func (s signers) allow(livemode bool) bool {
	return s.unbound || (livemode && s.live) || (!livemode && s.test)
}

func (s signers) String() string {
	switch {
	case s.live && s.test:
		return "was signed by secrets bound to live and to test"
	case s.live:
		return "was signed only by secrets bound to live (live:whsec_…)"
	default:
		return "was signed only by secrets bound to test (test:whsec_…)"
	}
}

// verifySignature checks the Stripe-Signature header against every secret (several during a
// rotation) with stripe-go's webhook package. It returns the modes of the secrets that signed
// payload within tolerance, an error wrapping errTooOld when one secret signed it but too long
// ago (or too far ahead), and one wrapping errInvalidSignature otherwise, a header with more than
// one t= included.
//
// It verifies the signature only. webhook.ConstructEvent* would also decode the body into
// stripe-go's Event, which fails on events of API versions before 2017-05-25 ("request" was a
// string) and would refuse them; stripeevent.Parse decodes any version.
func verifySignature(payload []byte, header string, secrets []config.WebhookSecret, tolerance time.Duration) (signers, error) {
	if tolerance <= 0 {
		tolerance = webhook.DefaultTolerance // as ConstructEventOptions does with a zero Tolerance
	}
	// stripe-go verifies the MAC with the last t= while signatureTime reads the first: with two,
	// a signature made for a far-future time would pass a tolerance check of the present.
	// Stripe sends exactly one.
	ts, count := signatureTime(header)
	if count > 1 {
		return signers{}, fmt.Errorf("%w: the header has %d t= timestamps; Stripe sends one", errInvalidSignature, count)
	}
	var by signers
	signedLongAgo := false
	last := errors.New("no secret configured")
	for _, secret := range secrets {
		err := webhook.ValidatePayloadWithTolerance(payload, header, secret.Secret, tolerance)
		switch {
		case err == nil:
			switch secret.Mode {
			case config.ModeLive:
				by.live = true
			case config.ModeTest:
				by.test = true
			default:
				by.unbound = true
			}
			continue
		case errors.Is(err, webhook.ErrNotSigned), errors.Is(err, webhook.ErrInvalidHeader):
			return signers{}, fmt.Errorf("%w: %w", errInvalidSignature, err) // the same for every secret
		case errors.Is(err, webhook.ErrTooOld):
			// stripe-go checks the age before the signature: an old timestamp counts only when
			// the signature itself is good, else it is just a bad signature.
			if webhook.ValidatePayloadIgnoringTolerance(payload, header, secret.Secret) == nil {
				signedLongAgo = true
			}
			err = webhook.ErrNoValidSignature
		}
		last = err
	}
	switch {
	case by != signers{}:
		// stripe-go bounds only the age: a timestamp far ahead would be accepted (and a
		// captured signature stay replayable for years).
		if count == 1 && ts.After(time.Now().Add(tolerance)) {
			return signers{}, fmt.Errorf("%w (%s): signed %s in the future", errTooOld, tolerance, time.Until(ts).Round(time.Second))
		}
		return by, nil
	case signedLongAgo:
		return signers{}, fmt.Errorf("%w (%s)", errTooOld, tolerance)
	}
	return signers{}, fmt.Errorf("%w: no configured secret matches (%w)", errInvalidSignature, last)
}

// signatureTime reads the t= of a Stripe-Signature header and counts the t= parts (an
// unparseable one gives the zero time).
func signatureTime(header string) (ts time.Time, count int) {
	for part := range strings.SplitSeq(header, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "t="); ok {
			count++
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && count == 1 {
				ts = time.Unix(n, 0)
			}
		}
	}
	return ts, count
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
	case errors.Is(err, errSlowBody):
		return http.StatusRequestTimeout, "request_timeout", err.Error()
	case errors.Is(err, errLivemodeMismatch):
		return http.StatusBadRequest, "livemode_mismatch", err.Error()
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
