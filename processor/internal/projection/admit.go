package projection

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tollgate/tollgate/pkg/backoff"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// A message fails for one of two reasons, and the answer differs:
//
//   - its own content (poison): it cannot be parsed, decoded, stored or applied. Retrying the
//     same bytes with the same code fails the same way, so after a bounded number of deliveries
//     it goes to dead_letters and stops blocking nothing but itself. Any failure of a message
//     applied on its own while Postgres answers a ping is its own (applyBatch isolates it), be
//     it a Postgres error, a panic or an encoding error nobody foresaw: every kind counts
//     attempts. Only the Postgres errors a retry fixes (serialization failure, deadlock, server
//     shutting down: retryable) stay transient.
//   - an outage (transient): Postgres down or restarting, a lost connection. The message is
//     redelivered after a backoff as often as it takes, and the consumer stops fetching until
//     Postgres answers; nothing is lost and, because the append is idempotent and the read model
//     is re-derived from the whole history, nothing is applied twice.
//
// A dead-lettered event was never stored (its transaction rolled back), so the customer's later
// events are derived without it and flow; `processor dlq redrive` applies it once fixed.

// PoisonError is a failure caused by the message itself.
type PoisonError struct {
	Reason string // what dead_letters.reason says
	// Permanent failures are dead-lettered on first sight: the bytes can never become valid.
	Permanent bool
	err       error
}

func (e *PoisonError) Error() string { return e.Reason }
func (e *PoisonError) Unwrap() error { return e.err }

// Admitted is an event that passed admit: parsed and, when it belongs to a customer, decoded.
type Admitted struct {
	Event   stripeevent.Event
	decoded subscription.Event
}

// Admit reads a message's payload and checks, before any transaction, that it can be applied:
// it is a Stripe event (stripeevent.Parse), its keys can be stored, and its object decodes
// (subscription.Decode). Failures are *poisonError: parse and key errors are permanent (a retry
// sees the same bytes); a decode error is not, so that during a rolling deploy an instance with
// a fixed decoder gets the message before it is dead-lettered. The event comes back whenever it
// parsed, for the logs and the dead letter's event id.
func Admit(raw []byte) (Admitted, error) {
	ev, err := stripeevent.Parse(raw)
	if err != nil {
		return Admitted{}, &PoisonError{Reason: "unparseable: " + err.Error(), Permanent: true, err: err}
	}
	// Postgres text cannot hold NUL; JSON can (\u0000). Such an id would fail the whole batch's
	// transaction, so it is caught here, where it is cheap and certain.
	for _, f := range [...]struct{ name, v string }{
		{"id", ev.ID}, {"type", ev.Type}, {"customer", ev.CustomerID}, {"account", ev.Account}, {"api_version", ev.APIVersion},
	} {
		if strings.ContainsRune(f.v, 0) {
			return Admitted{Event: ev}, &PoisonError{Reason: fmt.Sprintf("unstorable: event %q has a NUL character in its %s", ev.ID, f.name), Permanent: true}
		}
	}
	a := Admitted{Event: ev}
	if ev.CustomerID != "" {
		if a.decoded, err = subscription.Decode(ev); err != nil {
			return a, &PoisonError{Reason: err.Error(), err: err}
		}
	}
	return a, nil
}

// ErrDerivePanic is wrapped when decoding or deriving a history panicked: a bug the history
// triggers, which retrying cannot fix.
var ErrDerivePanic = errors.New("derivation panicked")

// IsContentError reports whether a failed projection was caused by the data it was given rather
// than by its surroundings: Postgres refused a value (data exception, integrity violation,
// program limit such as an index row too large) or the derivation panicked. Such a failure of a
// batch is narrowed down to the message at fault by applying the messages one at a time.
func IsContentError(err error) bool {
	if errors.Is(err, ErrDerivePanic) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && len(pgErr.Code) == 5 {
		switch pgErr.Code[:2] {
		case "22", "23", "54":
			return true
		}
	}
	return false
}

// AsPoison turns the failure of a single message applied alone while Postgres answers into what
// settle needs: a (non-permanent) poisonError, except for a serialization failure or deadlock,
// which stays transient.
func AsPoison(err error) error {
	if err == nil || retryable(err) {
		return err
	}
	return &PoisonError{Reason: "cannot be applied: " + err.Error(), err: err}
}

// retryable reports the Postgres errors that a retry of the same message fixes: serialization
// failure, deadlock, and the server going away (connection exceptions, shutdown, resources)
// between the failure and the ping.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	c := pgErr.Code
	return c == "40001" || c == "40P01" || strings.HasPrefix(c, "08") || strings.HasPrefix(c, "57P") || strings.HasPrefix(c, "53")
}

// RetryDelay is the redelivery delay after the n-th delivery failed transiently: 1s, 2s, 4s, …
// capped at one minute, with pkg/backoff's jitter.
func RetryDelay(n uint64) time.Duration {
	return backoff.Policy{Base: time.Second, Max: time.Minute}.Delay(int(min(n, 64))) //nolint:gosec // bounded by min
}
