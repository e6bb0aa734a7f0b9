// Package reconcile compares the read model with Stripe's subscriptions and, on request,
// repairs the drift by publishing snapshot events of the drifted subscriptions.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tollgate/tollgate/processor/internal/backfill"
	"github.com/tollgate/tollgate/processor/internal/stripeapi"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
)

// ErrDrift is returned by reconcile when the read model and Stripe differ (exit status 2).
var ErrDrift = errors.New("drift found")

// reconcilePageSize is the number of read-model rows read per query.
const reconcilePageSize = 1000

// The kinds of drift.
const (
	driftMissing         = "missing"           // Stripe has the subscription, the read model does not
	driftStatus          = "status"            // both have it, with different statuses
	DriftUnknownToStripe = "unknown to Stripe" // the read model has it, Stripe does not
)

// subscriptionSource lists Stripe's subscriptions; stripeAPI is the real one.
type subscriptionSource interface {
	Subscriptions(ctx context.Context, customerID string) iter.Seq2[stripeapi.Subscription, error]
}

// Drift is one difference between the read model and Stripe.
type Drift struct {
	CustomerID     string
	SubscriptionID string
	Kind           string
	Stripe         string // Stripe's status, "-" when Stripe has none
	Tollgate       string // the read model's status, "-" when it has none
}

// Report is what reconcile found.
type Report struct {
	Customers     int // read-model customers compared
	Subscriptions int // Stripe subscriptions listed
	// IgnoredEnded are Stripe's canceled or incomplete_expired subscriptions of customers the read
	// model does not know: history from before Tollgate saw the account, no access either way.
	IgnoredEnded int
	Drift        []Drift
}

// DriftCustomers is the number of customers with drift.
func (r Report) DriftCustomers() int {
	seen := map[string]bool{}
	for _, d := range r.Drift {
		seen[d.CustomerID] = true
	}
	return len(seen)
}

// stripeSubscriptions are Stripe's subscription statuses by customer and subscription id.
type stripeSubscriptions map[string]map[string]string

// listStripe lists Stripe's subscriptions (status=all; of one customer when customerID is not
// ""). progress hears how many were listed, at most every progressEvery.
func listStripe(ctx context.Context, src subscriptionSource, customerID string, progress func(int)) (stripeSubscriptions, int, error) {
	subs := stripeSubscriptions{}
	n := 0
	lastProgress := time.Now()
	for s, err := range src.Subscriptions(ctx, customerID) {
		if err != nil {
			return nil, n, err
		}
		n++
		if subs[s.CustomerID] == nil {
			subs[s.CustomerID] = map[string]string{}
		}
		subs[s.CustomerID][s.ID] = s.Status
		if progress != nil && time.Since(lastProgress) >= backfill.ProgressEvery {
			progress(n)
			lastProgress = time.Now()
		}
	}
	return subs, n, nil
}

// compareReadModel compares the read model (read through db, a page at a time; run it in one
// READ ONLY, REPEATABLE READ transaction for a consistent snapshot) with Stripe's subscriptions,
// which it consumes. Every subscription of a read-model customer is compared; of customers the
// read model does not know, Stripe's subscriptions that have not ended are reported missing (all
// of them when customerID is given). With customerID only that customer is read. Only the read
// model of scope sc is compared (Stripe's listing is of one mode and one account too).
func compareReadModel(ctx context.Context, db entitlement.Querier, sc scope.Scope, stripeSubs stripeSubscriptions, customerID string) (Report, error) {
	var r Report
	if customerID != "" {
		v, err := entitlement.GetCustomer(ctx, db, sc.Of(customerID))
		switch {
		case err == nil:
			r.Customers = 1
			r.Drift = compareCustomer(customerID, v.Subscriptions, stripeSubs[customerID])
			delete(stripeSubs, customerID)
		case !errors.Is(err, entitlement.ErrNotFound):
			return r, fmt.Errorf("read the read model: %w", err)
		}
	} else {
		for after := ""; ; {
			page, err := entitlement.ListCustomers(ctx, db, sc, after, reconcilePageSize)
			if err != nil {
				return r, fmt.Errorf("read the read model: %w", err)
			}
			for _, c := range page {
				r.Customers++
				r.Drift = append(r.Drift, compareCustomer(c.CustomerID, c.Subscriptions, stripeSubs[c.CustomerID])...)
				delete(stripeSubs, c.CustomerID)
			}
			if len(page) < reconcilePageSize {
				break
			}
			after = page[len(page)-1].CustomerID
		}
	}

	for cus, subs := range stripeSubs { // customers the read model does not know
		for id, status := range subs {
			if customerID == "" && (status == "canceled" || status == "incomplete_expired") {
				r.IgnoredEnded++
				continue
			}
			r.Drift = append(r.Drift, Drift{CustomerID: cus, SubscriptionID: id, Kind: driftMissing, Stripe: status, Tollgate: "-"})
		}
	}
	slices.SortFunc(r.Drift, func(a, b Drift) int {
		if c := strings.Compare(a.CustomerID, b.CustomerID); c != 0 {
			return c
		}
		return strings.Compare(a.SubscriptionID, b.SubscriptionID)
	})
	return r, nil
}

// compareCustomer is the drift of one read-model customer's subscriptions against Stripe's.
func compareCustomer(customerID string, ours []entitlement.Subscription, theirs map[string]string) []Drift {
	var out []Drift
	known := make(map[string]bool, len(ours))
	for _, s := range ours {
		known[s.ID] = true
		status, ok := theirs[s.ID]
		switch {
		case !ok:
			out = append(out, Drift{CustomerID: customerID, SubscriptionID: s.ID, Kind: DriftUnknownToStripe, Stripe: "-", Tollgate: s.Status})
		case status != s.Status:
			out = append(out, Drift{CustomerID: customerID, SubscriptionID: s.ID, Kind: driftStatus, Stripe: status, Tollgate: s.Status})
		}
	}
	for id, status := range theirs {
		if !known[id] {
			out = append(out, Drift{CustomerID: customerID, SubscriptionID: id, Kind: driftMissing, Stripe: status, Tollgate: "-"})
		}
	}
	return out
}

// WriteReport prints the drift table and what to do about it.
func WriteReport(w io.Writer, r Report, customerID string) error {
	var b strings.Builder
	scope, verb := fmt.Sprintf("the read model's %s", Plural(r.Customers, "customer")), "match"
	if customerID != "" {
		scope, verb = "customer "+customerID, "matches"
	}
	subs := fmt.Sprintf("Stripe's %s (status=all)", Plural(r.Subscriptions, "subscription"))
	if len(r.Drift) == 0 {
		fmt.Fprintf(&b, "No drift: %s %s %s.\n", scope, verb, subs)
	} else {
		tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
		_, _ = fmt.Fprintln(tw, "CUSTOMER\tSUBSCRIPTION\tDRIFT\tSTRIPE\tTOLLGATE")
		for _, d := range r.Drift {
			_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.CustomerID, d.SubscriptionID, d.Kind, d.Stripe, d.Tollgate)
		}
		_ = tw.Flush()
		kinds := map[string]int{}
		for _, d := range r.Drift {
			kinds[d.Kind]++
		}
		fmt.Fprintf(&b, "\nDrift in %s: %d missing, %d different status, %d unknown to Stripe (compared %s with %s).\n",
			Plural(r.DriftCustomers(), "customer"), kinds[driftMissing], kinds[driftStatus], kinds[DriftUnknownToStripe], scope, subs)
		b.WriteString(`Nothing was changed: the read model stays the operational truth, and drift is a signal that
events did not reach Tollgate. The fix is a backfill, e.g. processor backfill --since 30d (Stripe
keeps events for 30 days). A change made in the last minutes may still be on its way: run
reconcile again to confirm.
`)
	}
	if r.IgnoredEnded > 0 {
		fmt.Fprintf(&b, "Left out: %s of customers the read model does not know (canceled or incomplete_expired, no access either way).\n",
			Plural(r.IgnoredEnded, "ended subscription"))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Plural is "1 customer", "2 customers".
func Plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
