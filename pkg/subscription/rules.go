package subscription

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Rules are the business rules the derivation applies; the processor builds them from the
// USER_ID_METADATA_KEY, PAST_DUE_GRANTS and PLANS_FILE variables.
type Rules struct {
	// UserIDMetadataKey is the customer metadata key holding the app's user id; ""
	// means DefaultUserIDMetadataKey.
	UserIDMetadataKey string
	// PastDueGrants is whether a past_due subscription keeps access.
	PastDueGrants bool
	// Plans maps a Stripe price id or product id to the feature names it gives; nil means every
	// granting subscription gives ["premium"]. See State.Entitlement.
	Plans map[string][]string
}

// DefaultRules are the rules with every variable unset: user id under "user_id", past_due keeps
// access, no plans file.
func DefaultRules() Rules {
	return Rules{UserIDMetadataKey: DefaultUserIDMetadataKey, PastDueGrants: true}
}

// ErrInvalidPlans is wrapped by every error LoadPlans returns for input that is not a valid plans
// file (read errors are wrapped as they are).
var ErrInvalidPlans = errors.New("invalid plans file")

// LoadPlans reads a PLANS_FILE: one JSON object mapping a Stripe price or product id to an array of
// feature names, such as {"price_1": ["pro", "export"], "prod_2": ["team"]}. Ids must be non-empty
// and appear once; feature names must be non-empty strings. An id may map to [] (it then gives no
// features, and its subscriptions no "premium" either). Each id's features come back sorted and
// deduplicated, never nil. Errors name the offending id and wrap ErrInvalidPlans.
func LoadPlans(r io.Reader) (map[string][]string, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read plans file: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: empty, want a JSON object of price or product id to feature names", ErrInvalidPlans)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil {
		return nil, plansSyntaxError(dec, err)
	} else if tok != json.Delim('{') {
		return nil, fmt.Errorf("%w: want a JSON object of price or product id to feature names, got %s", ErrInvalidPlans, describeToken(tok))
	}
	plans := make(map[string][]string)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, plansSyntaxError(dec, err)
		}
		id, _ := tok.(string)
		if strings.TrimSpace(id) == "" {
			return nil, fmt.Errorf("%w: empty price or product id", ErrInvalidPlans)
		}
		if _, dup := plans[id]; dup {
			return nil, fmt.Errorf("%w: %q appears more than once", ErrInvalidPlans, id)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, plansSyntaxError(dec, err)
		}
		var features []string
		if raw = bytes.TrimSpace(raw); len(raw) == 0 || raw[0] != '[' {
			return nil, fmt.Errorf("%w: %q: want an array of feature names, got %.40s", ErrInvalidPlans, id, raw)
		}
		if err := json.Unmarshal(raw, &features); err != nil {
			return nil, fmt.Errorf("%w: %q: want an array of feature names (strings): %w", ErrInvalidPlans, id, err)
		}
		for _, f := range features {
			if strings.TrimSpace(f) == "" {
				return nil, fmt.Errorf("%w: %q: empty feature name", ErrInvalidPlans, id)
			}
		}
		slices.Sort(features)
		if features = slices.Compact(features); features == nil {
			features = []string{}
		}
		plans[id] = features
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, plansSyntaxError(dec, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: unexpected data after the JSON object (at byte %d)", ErrInvalidPlans, dec.InputOffset())
	}
	return plans, nil
}

func plansSyntaxError(dec *json.Decoder, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: unexpected end of JSON", ErrInvalidPlans)
	}
	return fmt.Errorf("%w: not valid JSON near byte %d: %w", ErrInvalidPlans, dec.InputOffset(), err)
}

func describeToken(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "an array"
		}
		return string(t)
	case string:
		return "a string"
	case nil:
		return "null"
	case bool:
		return "a boolean"
	}
	return "a number"
}

// Subscription statuses as Stripe names them, and StatusNone for a customer without subscriptions.
const (
	StatusActive            = "active"
	StatusTrialing          = "trialing"
	StatusPastDue           = "past_due"
	StatusUnpaid            = "unpaid"
	StatusPaused            = "paused"
	StatusIncomplete        = "incomplete"
	StatusIncompleteExpired = "incomplete_expired"
	StatusCanceled          = "canceled"
	StatusNone              = "none"
)

// Grants reports whether a subscription in status grants access: active and trialing do, past_due
// does while rules.PastDueGrants, every other status (including ones Stripe may add) does not.
func Grants(status string, rules Rules) bool {
	switch status {
	case StatusActive, StatusTrialing:
		return true
	case StatusPastDue:
		return rules.PastDueGrants
	}
	return false
}

// statusRank orders statuses from best (0) to worst: the contract's order, then statuses Tollgate
// does not know, then none.
func statusRank(status string) int {
	switch status {
	case StatusActive:
		return 0
	case StatusTrialing:
		return 1
	case StatusPastDue:
		return 2
	case StatusUnpaid:
		return 3
	case StatusPaused:
		return 4
	case StatusIncomplete:
		return 5
	case StatusIncompleteExpired:
		return 6
	case StatusCanceled:
		return 7
	case StatusNone, "":
		return 9
	}
	return 8
}

// betterStatus reports whether a is better than b. Unknown statuses, which share a rank, compare by
// name so that the result does not depend on which came first.
func betterStatus(a, b string) bool {
	if ra, rb := statusRank(a), statusRank(b); ra != rb {
		return ra < rb
	}
	return statusRank(a) == statusRank("unknown") && a < b
}
