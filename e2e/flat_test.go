package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/stack"
	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/testkit/stripetest"
	"github.com/tollgate/tollgate/testkit/wait"
)

const (
	flatHistory = 20000 // events stored for a long customer before the test sends any
	flatSends   = 10    // events sent one at a time per customer and measured
	flatRSSMax  = 512 << 20
)

// flatEnv is the stack of TestFlatCost and what the test drives it with.
type flatEnv struct {
	t    *testing.T
	ctx  context.Context
	st   *stack.Stack
	db   *pgxpool.Pool
	base int64 // the created second of every customer's first event
}

// flatEvent is the i-th event of customer: a subscription update or an invoice paid, alternately,
// created at base+i (test mode, stripetest's default).
func (e *flatEnv) flatEvent(customer string, i int) (id string, raw []byte) {
	id = fmt.Sprintf("evt_flat_%s_%06d", strings.TrimPrefix(customer, "cus_"), i)
	ev := stripetest.Event{ID: id, Created: e.base + int64(i)}
	switch {
	case i == 0:
		// Only the stored history names the user: an answer with it proves the history was read.
		ev.Type = "customer.created"
		ev.Object = map[string]any{"id": customer, "object": "customer",
			"metadata": map[string]any{"user_id": "u_" + strings.TrimPrefix(customer, "cus_")}}
	case i%2 == 0:
		ev.Type = "customer.subscription.updated"
		ev.Object = stripetest.Subscription("sub_"+strings.TrimPrefix(customer, "cus_"), customer, "active", "price_premium")
	default:
		ev.Type = "invoice.paid"
		ev.Object = map[string]any{"id": fmt.Sprintf("in_%s_%d", strings.TrimPrefix(customer, "cus_"), i), "object": "invoice",
			"customer": customer, "subscription": "sub_" + strings.TrimPrefix(customer, "cus_"), "status": "paid"}
	}
	return id, ev.JSON(e.t)
}

// seed stores events 0..n-1 of customer directly in the event store, in batches.
func (e *flatEnv) seed(customer string, n int) {
	const batch = 2000
	for from := 0; from < n; from += batch {
		evs := make([]stripeevent.Event, 0, batch)
		for i := from; i < min(from+batch, n); i++ {
			_, raw := e.flatEvent(customer, i)
			ev, err := stripeevent.Parse(raw)
			require.NoError(e.t, err)
			evs = append(evs, ev)
		}
		added, err := eventstore.Append(e.ctx, e.db, evs)
		require.NoError(e.t, err)
		require.EqualValues(e.t, len(evs), added)
	}
}

// lastEventID is the query API's last_event_id of customer, "" while it has none.
func (e *flatEnv) lastEventID(customer string) string {
	id, _ := e.answer(customer)
	return id
}

// answer is the query API's last_event_id and user_id of customer, "" while absent.
func (e *flatEnv) answer(customer string) (lastEventID, userID string) {
	req, err := http.NewRequestWithContext(e.ctx, http.MethodGet,
		e.st.URL(stack.QueryAPI)+"/v1/customers/"+customer+"/entitlement?livemode=false", nil)
	require.NoError(e.t, err)
	req.Header.Set("Authorization", "Bearer "+e.st.Token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	if resp.StatusCode != http.StatusOK {
		return "", ""
	}
	var m struct {
		LastEventID *string `json:"last_event_id"`
		UserID      *string `json:"user_id"`
	}
	require.NoError(e.t, json.Unmarshal(b, &m))
	if m.LastEventID != nil {
		lastEventID = *m.LastEventID
	}
	if m.UserID != nil {
		userID = *m.UserID
	}
	return lastEventID, userID
}

// send delivers event i of customer through the listener and returns how long after the
// listener's 200 the query API showed it as the customer's last event (polled every 5 ms).
func (e *flatEnv) send(customer string, i int) time.Duration {
	e.t.Helper()
	id, acked := e.deliver(customer, i)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := acked.Add(30 * time.Second)
	for e.lastEventID(customer) != id {
		require.False(e.t, time.Now().After(deadline), "%s of %s not shown within 30s", id, customer)
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("%s of %s: %v", id, customer, e.ctx.Err())
		case <-tick.C:
		}
	}
	return time.Since(acked)
}

// deliver sends event i of customer through the listener, requires its 200 and returns the
// event's id and when the 200 came.
func (e *flatEnv) deliver(customer string, i int) (string, time.Time) {
	e.t.Helper()
	id, raw := e.flatEvent(customer, i)
	resp := stripetest.Deliver(e.t, e.st.URL(stack.Listener)+"/webhooks/stripe", raw, e.st.WebhookSecret)
	require.Equal(e.t, http.StatusOK, resp.Status, "listener: %s", resp.Body)
	return id, time.Now()
}

// sendMany sends events from..from+n-1 of customer one at a time and returns their latencies.
func (e *flatEnv) sendMany(customer string, from, n int) []time.Duration {
	lat := make([]time.Duration, 0, n)
	for i := from; i < from+n; i++ {
		lat = append(lat, e.send(customer, i))
	}
	return lat
}

// quantile is the q-quantile (nearest rank) of ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// vmRSS is the resident set size of process pid, from /proc/<pid>/status.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "123456 kB"
			require.Len(t, f, 2)
			kb, err := strconv.ParseInt(f[0], 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// TestFlatCost proves the flat cost of checkpoints through the real services: an event of a customer with 20,000
// stored events is shown about as soon as one of a fresh customer (median within 3x), and two
// long customers alternating keep the processor's RSS under 512 MiB.
func TestFlatCost(t *testing.T) {
	t.Parallel()
	binDir, natsBin := buildBinaries(t)
	st, _ := startSharedStack(t, binDir, natsBin, "flat", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db, err := pgxpool.New(ctx, st.DatabaseURL)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	// Every event is in the past: the history spread over past seconds, the sent ones after it.
	e := &flatEnv{t: t, ctx: ctx, st: st, db: db, base: time.Now().Unix() - flatHistory - 3600}

	long, fresh, longA, longB := "cus_flatlong", "cus_flatfresh", "cus_flatalta", "cus_flatallb"
	seeded := time.Now()
	for _, c := range []string{long, longA, longB} {
		e.seed(c, flatHistory)
	}
	t.Logf("seeded %d customers with %d events each in %s", 3, flatHistory, time.Since(seeded).Round(time.Millisecond))

	// (1) The first event of the long customer may derive it from scratch (no checkpoint yet).
	firstID, acked := e.deliver(long, flatHistory)
	wait.For(t, 60*time.Second, "the long customer's first event in the query API", func() bool { return e.lastEventID(long) == firstID })
	t.Logf("first event of the long customer (from scratch): %.1f ms", ms(time.Since(acked)))
	_, user := e.answer(long)
	require.Equal(t, "u_flatlong", user, "the answer derives from the 20,000 stored events, not the webhook alone")
	longLat := e.sendMany(long, flatHistory+1, flatSends)
	freshLat := e.sendMany(fresh, 0, flatSends)
	lm, lp, fm, fp := quantile(longLat, 0.5), quantile(longLat, 0.9), quantile(freshLat, 0.5), quantile(freshLat, 0.9)
	t.Logf("flat cost: long customer %d events median %.1f ms p90 %.1f ms, fresh median %.1f ms p90 %.1f ms",
		flatHistory, ms(lm), ms(lp), ms(fm), ms(fp))
	require.LessOrEqual(t, lm, 3*fm, "the long customer's median is more than 3x the fresh customer's")

	// (2) Two long customers alternating: the processor's memory stays bounded.
	proc := st.Process(stack.Processor)
	require.NotNil(t, proc)
	var peak int64
	var altLat []time.Duration
	for k := range flatSends {
		for _, c := range []string{longA, longB} {
			altLat = append(altLat, e.send(c, flatHistory+k))
			peak = max(peak, vmRSS(t, proc.Pid()))
		}
	}
	t.Logf("two long customers of %d events alternating %d events each: median %.1f ms p90 %.1f ms, processor VmRSS peak %.1f MiB",
		flatHistory, flatSends, ms(quantile(altLat, 0.5)), ms(quantile(altLat, 0.9)), float64(peak)/(1<<20))
	require.Less(t, peak, int64(flatRSSMax), "processor RSS")
}
