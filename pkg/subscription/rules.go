package subscription

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
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
	// Limits maps a Stripe price id or product id to the limits it gives per subscription item
	// (PLANS_FILE's "limits"); nil means no limits. See State.Entitlement.
	Limits map[string]map[string]Limit
}

// Limit is what one subscription item of a listed price or product adds to a limit: Value, or
// the item's quantity when PerQuantity (PLANS_FILE's "quantity": seats).
type Limit struct {
	Value       int64
	PerQuantity bool
}

// of is what the limit adds for an item of quantity q.
func (l Limit) of(q int64) int64 {
	if l.PerQuantity {
		return max(q, 0)
	}
	return l.Value
}

// Plans is a parsed PLANS_FILE: per Stripe price or product id, the feature names and the limits
// it gives (Rules.Plans and Rules.Limits).
type Plans struct {
	Features map[string][]string
	Limits   map[string]map[string]Limit
}

// DefaultRules are the rules with every variable unset: user id under "user_id", past_due keeps
// access, no plans file.
func DefaultRules() Rules {
	return Rules{UserIDMetadataKey: DefaultUserIDMetadataKey, PastDueGrants: true}
}

// ErrInvalidPlans is wrapped by every error ParsePlans (and LoadPlans) returns for input that is not a valid plans
// file (read errors are wrapped as they are).
var ErrInvalidPlans = errors.New("invalid plans file")

// LoadPlans reads a PLANS_FILE as ParsePlans does and returns its feature names only.
func LoadPlans(r io.Reader) (map[string][]string, error) {
	p, err := ParsePlans(r)
	return p.Features, err
}

// ParsePlans reads a PLANS_FILE: one JSON object mapping a Stripe price or product id to what it
// gives, either an array of feature names or an object {"features": [...], "limits": {...}} whose
// limits map a limit name to a non-negative integer or to "quantity" (the subscription item's
// quantity), such as
//
//	{"price_1": ["pro", "export"],
//	 "price_team": {"features": ["team"], "limits": {"projects": 10, "seats": "quantity"}},
//	 "price_addon": {"limits": {"projects": 5}}}
//
// Ids must be non-empty and appear once; feature and limit names must be non-empty strings. An
// id may give no features ([] or an object without them; its subscriptions then get no
// "premium" either). The object takes no other key. A name may not be used both as a feature and
// as a limit anywhere in the file, and "premium" is always a feature. Each id's features come
// back sorted and deduplicated, never nil; Limits holds the ids that give at least one limit.
// Errors name the offending id and wrap ErrInvalidPlans.
func ParsePlans(r io.Reader) (Plans, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return Plans{}, fmt.Errorf("read plans file: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return Plans{}, fmt.Errorf("%w: empty, want a JSON object of price or product id to feature names", ErrInvalidPlans)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil {
		return Plans{}, plansSyntaxError(dec, err)
	} else if tok != json.Delim('{') {
		return Plans{}, fmt.Errorf("%w: want a JSON object of price or product id to feature names, got %s", ErrInvalidPlans, describeToken(tok))
	}
	plans := Plans{Features: make(map[string][]string)}
	featureOf := map[string]string{DefaultFeature: ""} // a feature name -> an id that uses it
	limitOf := map[string]string{}                     // a limit name -> an id that uses it
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Plans{}, plansSyntaxError(dec, err)
		}
		id, _ := tok.(string)
		if strings.TrimSpace(id) == "" {
			return Plans{}, fmt.Errorf("%w: empty price or product id", ErrInvalidPlans)
		}
		if _, dup := plans.Features[id]; dup {
			return Plans{}, fmt.Errorf("%w: %q appears more than once", ErrInvalidPlans, id)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return Plans{}, plansSyntaxError(dec, err)
		}
		features, limits, err := parsePlan(id, bytes.TrimSpace(raw))
		if err != nil {
			return Plans{}, err
		}
		for _, f := range features {
			if other, ok := limitOf[f]; ok {
				return Plans{}, fmt.Errorf("%w: %q: %q is a feature here and a limit of %q", ErrInvalidPlans, id, f, other)
			}
			featureOf[f] = id
		}
		for name := range limits {
			if other, ok := featureOf[name]; ok {
				if other == "" {
					return Plans{}, fmt.Errorf("%w: %q: %q is always a feature, it cannot be a limit", ErrInvalidPlans, id, name)
				}
				return Plans{}, fmt.Errorf("%w: %q: %q is a limit here and a feature of %q", ErrInvalidPlans, id, name, other)
			}
			limitOf[name] = id
		}
		plans.Features[id] = features
		if len(limits) > 0 {
			if plans.Limits == nil {
				plans.Limits = make(map[string]map[string]Limit)
			}
			plans.Limits[id] = limits
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return Plans{}, plansSyntaxError(dec, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Plans{}, fmt.Errorf("%w: unexpected data after the JSON object (at byte %d)", ErrInvalidPlans, dec.InputOffset())
	}
	return plans, nil
}

// parsePlan reads one id's value: an array of feature names or an object of features and limits.
func parsePlan(id string, raw json.RawMessage) ([]string, map[string]Limit, error) {
	var features []string
	var limits map[string]Limit
	switch {
	case len(raw) > 0 && raw[0] == '[':
		var err error
		if features, err = parseFeatures(id, raw); err != nil {
			return nil, nil, err
		}
	case len(raw) > 0 && raw[0] == '{':
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, nil, fmt.Errorf("%w: %q: %w", ErrInvalidPlans, id, err)
		}
		for key, v := range obj {
			var err error
			switch key {
			case "features":
				features, err = parseFeatures(id, bytes.TrimSpace(v))
			case "limits":
				limits, err = parseLimits(id, v)
			default:
				err = fmt.Errorf("%w: %q: unknown key %q (want \"features\" and \"limits\")", ErrInvalidPlans, id, key)
			}
			if err != nil {
				return nil, nil, err
			}
		}
	default:
		return nil, nil, fmt.Errorf("%w: %q: want an array of feature names or an object of features and limits, got %.40s", ErrInvalidPlans, id, raw)
	}
	slices.Sort(features)
	if features = slices.Compact(features); features == nil {
		features = []string{}
	}
	return features, limits, nil
}

func parseFeatures(id string, raw json.RawMessage) ([]string, error) {
	var features []string
	if len(raw) == 0 || raw[0] != '[' {
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
	return features, nil
}

func parseLimits(id string, raw json.RawMessage) (map[string]Limit, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%w: %q: limits: want an object of limit name to a number or \"quantity\", got %.40s", ErrInvalidPlans, id, raw)
	}
	limits := make(map[string]Limit, len(obj))
	for name, v := range obj {
		if strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("%w: %q: empty limit name", ErrInvalidPlans, id)
		}
		l, err := ParseLimit(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: limit %q: %w", ErrInvalidPlans, id, name, err)
		}
		limits[name] = l
	}
	return limits, nil
}

// ErrInvalidLimit is wrapped by ParseLimit's errors.
var ErrInvalidLimit = errors.New("want a non-negative integer or \"quantity\"")

// ParseLimit reads a limit's JSON value: a non-negative integer, or the string "quantity".
func ParseLimit(raw json.RawMessage) (Limit, error) {
	raw = bytes.TrimSpace(raw)
	if string(raw) == `"quantity"` {
		return Limit{PerQuantity: true}, nil
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return Limit{}, fmt.Errorf("%w, got %.40s", ErrInvalidLimit, raw)
	}
	if n < 0 {
		return Limit{}, fmt.Errorf("%w, got the negative %d", ErrInvalidLimit, n)
	}
	return Limit{Value: n}, nil
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
