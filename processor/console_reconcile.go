package main

import (
	"context"
	"time"

	"github.com/tollgate/tollgate/pkg/scope"
)

// reconcileKey is the backfill_state row of the last reconcile, which the console shows.
const reconcileKey = "reconcile.last"

// reconcileState is the outcome of the last reconcile run of any scope.
type reconcileState struct {
	FinishedAt     time.Time `json:"finished_at"`
	Scope          string    `json:"scope"`
	Customers      int       `json:"customers"`
	Subscriptions  int       `json:"subscriptions"`
	Drift          int       `json:"drift"`
	DriftCustomers int       `json:"drift_customers"`
}

// recordReconcile stores r as the last reconcile; a failure to store it does not fail reconcile.
func recordReconcile(ctx context.Context, db stateQuerier, sc scope.Scope, r reconcileReport) error {
	return (&stateStore{db: db}).put(ctx, reconcileKey, reconcileState{FinishedAt: time.Now().UTC(), Scope: sc.String(),
		Customers: r.Customers, Subscriptions: r.Subscriptions, Drift: len(r.Drift), DriftCustomers: r.driftCustomers()})
}

func lastReconcile(ctx context.Context, s *stateStore) (reconcileState, bool, error) {
	var rc reconcileState
	found, err := s.get(ctx, reconcileKey, &rc)
	return rc, found, err
}
