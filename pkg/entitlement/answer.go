package entitlement

import (
	"time"

	"github.com/tollgate/tollgate/pkg/scope"
)

// Answer is the contract's answer for a user or a customer: what GET /v1/.../entitlement serves,
// what a notification carries and what the console shows. One type, so the three cannot drift.
type Answer struct {
	UserID           *string          `json:"user_id"`
	CustomerIDs      []string         `json:"customer_ids"`
	Livemode         bool             `json:"livemode"`
	Account          *string          `json:"account"` // null for the platform
	Premium          bool             `json:"premium"`
	Status           string           `json:"status"`
	Features         []string         `json:"features"`
	Limits           map[string]int64 `json:"limits"`
	Grants           []Grant          `json:"grants"`
	Subscriptions    []Subscription   `json:"subscriptions"`
	LastEventID      *string          `json:"last_event_id"`
	LastEventCreated *time.Time       `json:"last_event_created"`
	UpdatedAt        *time.Time       `json:"updated_at"`
	FailOpen         bool             `json:"fail_open"`
}

// UserAnswer is the answer for a user's row: last_event_id and last_event_created null for a user
// known only by grants.
func UserAnswer(u User) Answer {
	a := Answer{
		UserID: &u.UserID, CustomerIDs: u.CustomerIDs, Livemode: u.Scope.Livemode, Account: AccountOf(u.Scope),
		Premium: u.Premium, Status: u.Status, Features: u.Features, Limits: nonNilMap(u.Limits), Grants: u.Grants,
		Subscriptions: u.Subscriptions, UpdatedAt: &u.UpdatedAt,
	}
	if a.Grants == nil {
		a.Grants = []Grant{}
	}
	if u.LastEventID != "" {
		a.LastEventID, a.LastEventCreated = &u.LastEventID, &u.LastEventCreated
	}
	return a
}

// CustomerAnswer is the answer for a customer's row: user_id null while no user is known, and no
// grants (grants are given to users).
func CustomerAnswer(c Customer) Answer {
	a := Answer{
		CustomerIDs: []string{c.CustomerID}, Livemode: c.Scope.Livemode, Account: AccountOf(c.Scope),
		Premium: c.Premium, Status: c.Status, Features: c.Features, Limits: nonNilMap(c.Limits), Grants: []Grant{},
		Subscriptions: c.Subscriptions, LastEventID: &c.LastEventID, LastEventCreated: &c.LastEventCreated, UpdatedAt: &c.UpdatedAt,
	}
	if c.UserID != "" {
		a.UserID = &c.UserID
	}
	return a
}

// AccountOf is the answer's account: the connected account's id, null for the platform.
func AccountOf(sc scope.Scope) *string {
	if sc.Account == "" {
		return nil
	}
	return &sc.Account
}
