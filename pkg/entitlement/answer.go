package entitlement

import (
	"time"

	"github.com/tollgate/tollgate/pkg/scope"
)

// Answer is the contract's answer for a user or a customer: what GET /v1/.../entitlement serves,
// what a notification carries and what the console shows. One type, so the three cannot drift.
type Answer struct {
	UserID           *string        `json:"user_id"`
	CustomerIDs      []string       `json:"customer_ids"`
	Livemode         bool           `json:"livemode"`
	Account          *string        `json:"account"` // null for the platform
	Premium          bool           `json:"premium"`
	Status           string         `json:"status"`
	Features         []string       `json:"features"`
	Subscriptions    []Subscription `json:"subscriptions"`
	LastEventID      *string        `json:"last_event_id"`
	LastEventCreated *time.Time     `json:"last_event_created"`
	UpdatedAt        *time.Time     `json:"updated_at"`
	FailOpen         bool           `json:"fail_open"`
}

// UserAnswer is the answer for a user's row.
func UserAnswer(u User) Answer {
	return Answer{
		UserID: &u.UserID, CustomerIDs: u.CustomerIDs, Livemode: u.Scope.Livemode, Account: AccountOf(u.Scope),
		Premium: u.Premium, Status: u.Status, Features: u.Features, Subscriptions: u.Subscriptions,
		LastEventID: &u.LastEventID, LastEventCreated: &u.LastEventCreated, UpdatedAt: &u.UpdatedAt,
	}
}

// CustomerAnswer is the answer for a customer's row: user_id null while no user is known.
func CustomerAnswer(c Customer) Answer {
	a := Answer{
		CustomerIDs: []string{c.CustomerID}, Livemode: c.Scope.Livemode, Account: AccountOf(c.Scope),
		Premium: c.Premium, Status: c.Status, Features: c.Features, Subscriptions: c.Subscriptions,
		LastEventID: &c.LastEventID, LastEventCreated: &c.LastEventCreated, UpdatedAt: &c.UpdatedAt,
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
