package stripeevent

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// MaxIDBytes is the longest id, type, account or customer id Validate accepts. Stripe's ids are
// far shorter (an event id is about 30 bytes); the bound keeps NATS subjects and headers, which
// carry these values, within the server's protocol line, and index rows small.
const MaxIDBytes = 255

// MaxCreatedAhead is how far in the future Validate accepts an event's created. Stripe stamps
// created itself, so only a clock skew puts it ahead; a year-10000 created cannot be stored or
// answered as a timestamp.
const MaxCreatedAhead = 24 * time.Hour

// ErrUnstorable is wrapped, together with ErrInvalid, by every error Validate returns: the event
// parsed but a field is one the store or the queue cannot hold. The message names the field.
var ErrUnstorable = errors.New("field cannot be stored")

// Validate checks the fields of a parsed event that end up in NATS subjects, headers and
// Postgres keys: id, type, account and customer id must be 1 to MaxIDBytes printable ASCII bytes
// without spaces (account and customer may be absent), and created a positive integer at most
// MaxCreatedAhead after now. The error wraps ErrInvalid and ErrUnstorable and names the field.
// Values that Parse rewrote (invalid UTF-8 becomes U+FFFD) are not ASCII and are refused, so
// two distinct raw ids can never collide.
func Validate(ev Event, now time.Time) error {
	for _, f := range [...]struct {
		name, v  string
		optional bool
	}{
		{"id", ev.ID, false},
		{"type", ev.Type, false},
		{"account", ev.Account, true},
		{"customer", ev.CustomerID, true},
	} {
		if f.v == "" && f.optional {
			continue
		}
		if reason := badToken(f.v); reason != "" {
			return fmt.Errorf("%w: %w: %s %s", ErrInvalid, ErrUnstorable, f.name, reason)
		}
	}
	switch {
	case ev.Created <= 0:
		return fmt.Errorf("%w: %w: created must be a positive integer", ErrInvalid, ErrUnstorable)
	case ev.Created > now.Add(MaxCreatedAhead).Unix():
		return fmt.Errorf("%w: %w: created %d is more than %s in the future", ErrInvalid, ErrUnstorable, ev.Created, MaxCreatedAhead)
	}
	return nil
}

// badToken says what is wrong with an id-like value, "" when nothing is.
func badToken(s string) string {
	switch {
	case s == "":
		return "is empty"
	case len(s) > MaxIDBytes:
		return fmt.Sprintf("is %d bytes, more than %d", len(s), MaxIDBytes)
	}
	for i := range len(s) {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return fmt.Sprintf("has byte 0x%02x at %d: only printable ASCII without spaces is allowed", c, i)
		}
	}
	return ""
}

// ReservedTypePrefix starts the type of every event Tollgate makes itself (its snapshot events,
// SnapshotType); Stripe's types never do.
const ReservedTypePrefix = "tollgate."

// ErrReserved is wrapped, together with ErrInvalid, by the error of ValidateFromStripe: the event
// claims to be one of Tollgate's own.
var ErrReserved = errors.New("reserved for Tollgate's own events")

// ValidateFromStripe refuses an event that arrived from outside but claims to be one Tollgate
// made itself: a type starting ReservedTypePrefix or an id starting SnapshotIDPrefix. Only the
// processor's repair path makes those (from an object it fetched from the API with its own key),
// so one in a webhook is a forgery, however well signed. The error wraps ErrInvalid and
// ErrReserved and names the field.
func ValidateFromStripe(ev Event) error {
	switch {
	case strings.HasPrefix(ev.Type, ReservedTypePrefix):
		return fmt.Errorf("%w: %w: type %q starts with %q", ErrInvalid, ErrReserved, ev.Type, ReservedTypePrefix)
	case strings.HasPrefix(ev.ID, SnapshotIDPrefix):
		return fmt.Errorf("%w: %w: id %q starts with %q", ErrInvalid, ErrReserved, ev.ID, SnapshotIDPrefix)
	}
	return nil
}

// IsOwn reports whether ev carries an id or type that only Tollgate's own events may carry (see
// ValidateFromStripe).
func IsOwn(ev Event) bool { return ValidateFromStripe(ev) != nil }
