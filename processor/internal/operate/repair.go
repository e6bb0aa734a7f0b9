package operate

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/pkg/repair"
	"github.com/tollgate/tollgate/pkg/scope"
)

// EnqueueCustomerRepair asks for a repair from Stripe of customer k and every subscription
// Stripe lists for it, in k's scope (one repair.ObjectCustomerSubscriptions): a subscription
// whose events were all lost is unknown here and is found only so. The repairer reads them and
// publishes them as snapshot events; reason says who asked.
func EnqueueCustomerRepair(ctx context.Context, db repair.Execer, k scope.Key, reason string) error {
	rs := []repair.Repair{{ObjectType: repair.ObjectCustomerSubscriptions, ObjectID: k.ID, Livemode: k.Livemode,
		Account: k.Account, SourceEventID: fmt.Sprintf("tgconsole_%d", time.Now().UnixNano()), Reason: reason}}
	return repair.Enqueue(ctx, db, rs)
}
