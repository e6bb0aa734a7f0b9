package projection

import (
	"context"
	"log/slog"
	"time"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/processor/internal/service"
)

// marksKeep is how long the read model remembers applied event and Checkout Session ids for
// ?wait_for= (read your writes): a success page asks within seconds.
const marksKeep = 24 * time.Hour

// marksOf are the applied marks of a batch: each event of a customer, and each completed
// Checkout Session, under its customer.
func marksOf(events []Admitted) []entitlement.Mark {
	var out []entitlement.Mark
	for _, a := range events {
		c := a.Event.CustomerID
		if c == "" {
			continue
		}
		k := ScopeOf(a.Event).Of(c)
		out = append(out, entitlement.Mark{ID: a.Event.ID, Customer: k})
		if a.decoded.Checkout != nil && a.decoded.Checkout.ID != "" {
			out = append(out, entitlement.Mark{ID: a.decoded.Checkout.ID, Customer: k})
		}
	}
	return out
}

// PruneMarks deletes old marks hourly until ctx is done.
func PruneMarks(ctx context.Context, q entitlement.Querier, logger *slog.Logger) {
	service.Every(ctx, time.Hour, func(ctx context.Context) {
		if err := entitlement.PruneMarks(ctx, q, marksKeep); err != nil && ctx.Err() == nil {
			logger.Warn("prune applied marks", "error", err)
		}
	})
}
