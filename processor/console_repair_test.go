package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/processortest"

	"github.com/tollgate/tollgate/processor/internal/console"
	"github.com/tollgate/tollgate/processor/internal/ingest"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/testkit/stripetest"
	"github.com/tollgate/tollgate/testkit/wait"
)

// pendingRepairs counts the rows of pending_repairs, done or not.
func pendingRepairs(t *testing.T, b *processortest.Bundle) int {
	t.Helper()
	var n int
	require.NoError(t, b.DB.Pool.QueryRow(t.Context(), `SELECT count(*) FROM pending_repairs`).Scan(&n))
	return n
}

// The console's "Repair from Stripe" against a fake Stripe with planted drift: the stored events
// say sub_REP1 is active; Stripe says it was canceled since and the customer subscribed again as
// sub_REP2, whose events were all lost (Tollgate never heard of it). One click and the page, the
// read model and the timeline agree with Stripe. A change from another origin,
// or without the session's CSRF token, is refused and enqueues nothing.
func TestConsoleRepairInBrowser(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	b := processortest.Setup(t)
	k := processortest.NewKit(t, "crep")
	events := k.Signup("cus_REP1", "u_rep", "sub_REP1", "price_1", processortest.T0)
	b.Publish(t, events...)

	// Stripe's side: the subscription canceled, the customer still u_rep's. Every third request
	// fails with a 500, which the repairer retries.
	fake := stripetest.NewAPI(t, processortest.TestAPIKey, stripetest.Faults{Every500: 3})
	canceled := stripetest.Subscription("sub_REP1", "cus_REP1", "canceled", "price_1")
	canceled["ended_at"] = time.Now().Add(-time.Hour).Unix()
	fake.AddSubscription(t, canceled, processortest.T0+41)
	fake.AddSubscription(t, stripetest.Subscription("sub_REP2", "cus_REP1", "active", "price_2"), processortest.T0+42)
	fake.AddCustomer(t, map[string]any{"id": "cus_REP1", "object": "customer", "livemode": false,
		"email": "jenny.rosen+cus_REP1@example.com", "metadata": map[string]any{"user_id": "u_rep"}})

	s := bundleServeWithEnv(b, t, map[string]string{"ADMIN_TOKENS": "tok_console",
		"STRIPE_API_KEY": processortest.TestAPIKey, "STRIPE_API_BASE": fake.URL})
	processortest.CaughtUp(t, b.DB.Pool, processortest.Expect(t, b.Rules, events...), 20*time.Second)
	dir := t.TempDir()
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	customerPath := "/admin/customers/cus_REP1?livemode=false"
	key := scope.Key{ID: "cus_REP1"}

	_, loc := page(t, ctx, "html", chromedp.Navigate(s.base+"/admin/"), chromedp.WaitVisible(css("#token")),
		chromedp.SendKeys(css("#token"), "tok_console"), chromedp.Submit(css("#token")), chromedp.WaitVisible(css("#q")))
	require.Equal(t, s.base+"/admin/search", loc)

	// Before: the stored events' answer, and the button.
	html, _ := page(t, ctx, "main", chromedp.Navigate(s.base+customerPath), chromedp.WaitVisible(css("#repair")))
	contains(t, html, `"premium": true`)
	contains(t, html, `"status": "active"`)
	require.NotContains(t, html, stripeevent.SnapshotIDPrefix, "no snapshot yet")
	shot(t, ctx, dir, "repair-before")

	// A page of another origin (same host, another port: the SameSite=Strict cookie goes along)
	// that posts to the repair route as soon as it loads, with a guessed CSRF token, and one
	// without: both refused, nothing enqueued.
	for _, field := range []string{`<input type="hidden" name="csrf" value="` + console.Csrf("tok_guess") + `">`, ""} {
		attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/admin/customers/cus_REP1/repair?livemode=false">%s</form><script>document.getElementById('f').submit()</script>`, s.base, field)
		}))
		require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(attacker.URL)))
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](`location.href.includes('/repair') && document.readyState === 'complete'`))
		require.NoError(t, err, "the attacker's form is posted")
		html, loc = page(t, ctx, "body")
		attacker.Close()
		require.Contains(t, loc, s.base+"/admin/customers/cus_REP1/repair", "the browser posted to the console")
		contains(t, html, "invalid CSRF token", "another origin")
		require.Zero(t, pendingRepairs(t, b), "another origin enqueued a repair")
	}

	// The same refusals outside a browser: with the cookie, without the token or with another
	// session's; and no cookie at all.
	for name, tc := range map[string]struct {
		cookie, form string
		status       int
	}{
		"no token":             {cookie: "tok_console", form: "", status: http.StatusForbidden},
		"another's token":      {cookie: "tok_console", form: "csrf=" + console.Csrf("tok_other"), status: http.StatusForbidden},
		"no cookie":            {form: "csrf=" + console.Csrf("tok_console"), status: http.StatusSeeOther},
		"a wrong cookie":       {cookie: "tok_wrong", form: "csrf=" + console.Csrf("tok_wrong"), status: http.StatusSeeOther},
		"the token in the url": {cookie: "tok_console", status: http.StatusForbidden},
	} {
		target := s.base + "/admin/customers/cus_REP1/repair?livemode=false"
		if name == "the token in the url" {
			target += "&csrf=" + console.Csrf("tok_console")
		}
		code, to := postForm(t, target, tc.cookie, tc.form)
		require.Equal(t, tc.status, code, name)
		if code == http.StatusSeeOther {
			require.Equal(t, "/admin/", to, name)
		}
	}
	require.Zero(t, pendingRepairs(t, b), "a refused change enqueued a repair")
	got, err := entitlement.GetCustomer(t.Context(), b.DB.Pool, key)
	require.NoError(t, err)
	require.True(t, got.Premium, "nothing changed yet")

	// The click.
	html, _ = page(t, ctx, "#flash", chromedp.Navigate(s.base+customerPath), chromedp.WaitVisible(css("#repair")),
		chromedp.Click(css("#repair")), chromedp.WaitVisible(css("#flash")))
	const flash = "repair enqueued: the customer and every subscription Stripe has for it (see open repairs on the pipeline page)"
	contains(t, html, flash)
	_, loc = page(t, ctx, "html")
	require.Equal(t, s.base+"/admin/customers/cus_REP1?livemode=false&done="+url.QueryEscape(flash), loc, "back on the customer page, in its scope")

	// The repairer reads the customer and lists its subscriptions (through the faults) and applies
	// them; the page follows.
	wait.For(t, 30*time.Second, "the page shows Stripe's state", func() bool {
		html, _ = page(t, ctx, "main", chromedp.Navigate(s.base+customerPath), chromedp.WaitVisible(css("#timeline")))
		return strings.Contains(html, `"status": "canceled"`) && strings.Contains(html, "sub_REP2")
	})
	contains(t, html, `"premium": true`, "the subscription Tollgate never heard of")
	contains(t, html, `"user_id": "u_rep"`, "the customer snapshot keeps the user")
	for _, raw := range events {
		contains(t, html, ingest.EventIDOf(raw), "the stored events stay on the timeline")
	}
	for _, obj := range []string{"customer", "subscription"} {
		contains(t, html, stripeevent.SnapshotType(obj), "the timeline shows the snapshot of the "+obj)
	}
	contains(t, html, stripeevent.SnapshotIDPrefix+"tgconsole_")
	contains(t, html, "sub_REP1 active -&gt; canceled", "the timeline says why")
	last, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('#timeline tr')].pop().innerText`))
	require.NoError(t, err)
	require.Contains(t, last, stripeevent.SnapshotType("subscription"), "the snapshot is the last event applied")
	require.Regexp(t, stripeevent.SnapshotIDPrefix+`tgconsole_\d+_sub_REP2`, html, "the snapshot of the subscription Tollgate never heard of")
	shot(t, ctx, dir, "repair-after")

	// The read model (what the query API answers) agrees with Stripe, for the customer and the user.
	got, err = entitlement.GetCustomer(t.Context(), b.DB.Pool, key)
	require.NoError(t, err)
	require.True(t, got.Premium)
	require.Equal(t, "active", got.Status)
	status := map[string]string{}
	for _, sub := range got.Subscriptions {
		status[sub.ID] = sub.Status
	}
	require.Equal(t, map[string]string{"sub_REP1": "canceled", "sub_REP2": "active"}, status)
	require.Equal(t, "u_rep", got.UserID)
	u, err := entitlement.GetUser(t.Context(), b.DB.Pool, scope.Key{ID: "u_rep"})
	require.NoError(t, err)
	require.True(t, u.Premium)
	require.Equal(t, []string{"cus_REP1"}, u.CustomerIDs)

	// The repair is closed, applied, as the operator's.
	rows, err := b.DB.Pool.Query(t.Context(), `SELECT object_type, object_id, reason, outcome FROM pending_repairs WHERE done_at IS NOT NULL ORDER BY object_type`)
	require.NoError(t, err)
	var done []string
	for rows.Next() {
		var typ, id, reason, outcome string
		require.NoError(t, rows.Scan(&typ, &id, &reason, &outcome))
		done = append(done, strings.Join([]string{typ, id, reason, outcome}, " "))
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"customer.subscriptions cus_REP1 operator console applied"}, done)
	require.Equal(t, 1, pendingRepairs(t, b))
	var read []string
	for _, r := range fake.Requests() {
		if r.Status == http.StatusOK {
			read = append(read, r.Path)
		}
	}
	require.Subset(t, read, []string{"/v1/customers/cus_REP1", "/v1/subscriptions"}, "the objects were read from Stripe")
}

// postForm posts form to target with the console cookie (none when ""), not following a
// redirect; it answers the status and the Location.
func postForm(t *testing.T, target, cookie, form string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, target, strings.NewReader(form))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: console.ConsoleCookie, Value: cookie})
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return resp.StatusCode, resp.Header.Get("Location")
}
