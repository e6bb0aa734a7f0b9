// Package scope names where a Stripe event belongs: its mode (livemode) and, for Connect, the
// connected account that sent it. State is derived, stored and answered per scope, so an event of
// one scope never changes another's answer: a test-mode subscription never grants live access and
// the user ids of two connected accounts never mix.
package scope

import (
	"cmp"
	"fmt"
	"strings"
)

// Scope is a Stripe mode and a Connect account ("" for the platform's own events). The zero
// value is test mode on the platform.
type Scope struct {
	Livemode bool
	Account  string // "acct_…" of a connected account, "" for the platform
}

// Live is the platform's live mode.
func Live() Scope { return Scope{Livemode: true} }

// Mode is "live" or "test".
func (s Scope) Mode() string {
	if s.Livemode {
		return "live"
	}
	return "test"
}

// String is "live" or "test" for the platform, "live acct_…" for a connected account.
func (s Scope) String() string {
	if s.Account == "" {
		return s.Mode()
	}
	return s.Mode() + " " + s.Account
}

// Key names a customer or a user in one scope.
type Key struct {
	Scope
	ID string
}

// Of is the key of id in s.
func (s Scope) Of(id string) Key { return Key{Scope: s, ID: id} }

// String is "<live|test> <account> <id>" (the account "" for the platform, so two spaces there):
// the form the read model's notifications carry (migrations/000005) and advisory locks hash.
// Accounts hold no spaces (the listener refuses them), so ParseKey reads it back even when the id
// has some.
func (k Key) String() string { return k.Mode() + " " + k.Account + " " + k.ID }

// ParseKey reads Key.String's form.
func ParseKey(s string) (Key, error) {
	parts := strings.SplitN(s, " ", 3)
	if len(parts) != 3 || (parts[0] != "live" && parts[0] != "test") {
		return Key{}, fmt.Errorf("scope key %q: want \"<live|test> <account> <id>\"", s)
	}
	return Key{Scope: Scope{Livemode: parts[0] == "live", Account: parts[1]}, ID: parts[2]}, nil
}

// Compare orders keys by mode (test first), account, then id: the one order in which keys are
// locked and paged.
func Compare(a, b Key) int {
	if a.Livemode != b.Livemode {
		if a.Livemode {
			return 1
		}
		return -1
	}
	return cmp.Or(strings.Compare(a.Account, b.Account), strings.Compare(a.ID, b.ID))
}

// Columns splits keys into the column arrays the SQL statements unnest: livemode, account, id.
func Columns(keys []Key) (livemode []bool, account, id []string) {
	livemode, account, id = make([]bool, len(keys)), make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		livemode[i], account[i], id[i] = k.Livemode, k.Account, k.ID
	}
	return livemode, account, id
}

// ValidAccount reports whether s looks like a connected account id: "acct_" followed by 1 to
// 250 ASCII letters and digits.
func ValidAccount(s string) bool {
	rest, ok := strings.CutPrefix(s, "acct_")
	if !ok || rest == "" || len(rest) > 250 {
		return false
	}
	for _, r := range rest {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}
