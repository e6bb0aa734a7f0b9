package reconcile

import (
	"context"
	"time"

	"github.com/tollgate/tollgate/processor/internal/backfill"

	"github.com/tollgate/tollgate/pkg/scope"
)

// reconcileKey is the backfill_state row of the last reconcile, which the console shows.
const reconcileKey = "reconcile.last"

// State is the outcome of the last reconcile run of any scope.
type State struct {
	FinishedAt     time.Time `json:"finished_at"`
	Scope          string    `json:"scope"`
	Customers      int       `json:"customers"`
	Subscriptions  int       `json:"subscriptions"`
	Drift          int       `json:"drift"`
	DriftCustomers int       `json:"drift_customers"`
}

// Record stores r as the last reconcile; a failure to store it does not fail reconcile.
func Record(ctx context.Context, db backfill.StateQuerier, sc scope.Scope, r Report) error {
	return (&backfill.StateStore{DB: db}).Put(ctx, reconcileKey, State{FinishedAt: time.Now().UTC(), Scope: sc.String(),
		Customers: r.Customers, Subscriptions: r.Subscriptions, Drift: len(r.Drift), DriftCustomers: r.DriftCustomers()})
}

func Last(ctx context.Context, s *backfill.StateStore) (State, bool, error) {
	var rc State
	found, err := s.Get(ctx, reconcileKey, &rc)
	return rc, found, err
}
