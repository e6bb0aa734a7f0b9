package processortest

import (
	"fmt"
	"testing"
	"time"

	"github.com/tollgate/tollgate/testkit/stripetest"
)

// TestAPIKey is the restricted key the fake Stripe API accepts.
const TestAPIKey = "rk_test_tollgate_backfill"

// AddEvents adds n subscription events to fake, one a minute back from an hour ago (so within
// the default window and older than scheduledSettle), each of its own customer. It returns them
// newest first, as Stripe lists them.
func AddEvents(t *testing.T, fake *stripetest.API, prefix string, n int, delivered func(i int) bool) (ids []string, raws [][]byte) {
	t.Helper()
	base := time.Now().Add(-time.Hour).Unix()
	for i := range n {
		id := fmt.Sprintf("evt_%s_%03d", prefix, i)
		typ := "customer.subscription.updated"
		if i%4 == 3 {
			typ = "invoice.paid"
		}
		raw := stripetest.Event{
			ID: id, Type: typ, Created: base - int64(n-i)*60,
			Object: stripetest.Subscription(fmt.Sprintf("sub_%s_%03d", prefix, i), fmt.Sprintf("cus_%s_%03d", prefix, i), "active", "price_pro"),
		}.JSON(t)
		fake.AddEvent(t, raw, delivered(i))
		ids = append([]string{id}, ids...)
		raws = append([][]byte{raw}, raws...)
	}
	return ids, raws
}
