package main

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/processortest"

	"github.com/tollgate/tollgate/processor/internal/ingest"
	"github.com/tollgate/tollgate/processor/internal/reconcile"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/failopen"
	"github.com/tollgate/tollgate/pkg/scope"
)

// chromiumPath finds the browser the console test drives; it fails the test, never skips it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("the console test needs headless Chromium: install Debian's chromium package (apt-get install -y chromium)")
	return ""
}

// browser starts a fresh headless Chromium for the test and returns its context.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(cancelTimeout)
	_, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err, "start chromium")
	return ctx
}

// shot saves a full-page screenshot under the test's temp dir and, with TOLLGATE_SCREENSHOTS
// set, copies it there (as console-<name>.png).
func shot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err, "screenshot %s", name)
	file := "console-" + name + ".png"
	require.NoError(t, os.WriteFile(filepath.Join(dir, file), png, 0o600))
	if out := os.Getenv("TOLLGATE_SCREENSHOTS"); out != "" {
		require.NoError(t, os.MkdirAll(out, 0o750))
		require.NoError(t, os.WriteFile(filepath.Join(out, file), png, 0o644))
	}
}

// contains is require.Contains without the whole page in the message.
func contains(t *testing.T, html, want string, msg ...any) {
	t.Helper()
	if !strings.Contains(html, want) {
		t.Fatalf("the page does not contain %q %v; it has %d bytes, starting %.300q", want, msg, len(html), html)
	}
}

// page runs steps, then answers the outer HTML of sel and the location.
func page(t *testing.T, ctx context.Context, sel string, steps ...chromedp.Action[chromedp.Void]) (html, loc string) {
	t.Helper()
	require.NoError(t, chromedp.Do(ctx, steps...))
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS(sel)))
	require.NoError(t, err)
	loc, err = chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	return html, loc
}

func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	b := processortest.Setup(t)
	k := processortest.NewKit(t, "con")
	events := k.Signup("cus_CON1", "u_con", "sub_CON1", "price_1", processortest.T0)
	b.Publish(t, events...)
	// A dead letter that applies once redriven (the code that refused it was fixed since).
	poisoned := k.CustomerCreated("cus_CON2", processortest.T0+50, "u_con2")
	require.NoError(t, eventstore.RecordDeadLetter(t.Context(), b.DB.Pool, eventstore.DeadLetter{
		EventID: ingest.EventIDOf(poisoned), Subject: "stripe.events.test", StreamSeq: 1 << 40, Payload: poisoned,
		Reason: "test: refused by an older processor", Attempts: 5}))
	// The same user in live mode: the user page shows both scopes, the live customer's page its own.
	live := k.Signup("cus_CONL", "u_con", "sub_CONL", "price_1", processortest.T0+100)
	for i := range live {
		live[i] = k.Edit(live[i], func(ev, obj map[string]any) { ev["livemode"], obj["livemode"] = true, true })
	}
	b.Publish(t, live...)
	s := bundleServeWithEnv(b, t, map[string]string{"ADMIN_TOKENS": consoleAdmin})
	processortest.CaughtUp(t, b.DB.Pool, processortest.Expect(t, b.Rules, append(append([][]byte{}, events...), live...)...), 20*time.Second)
	dir := t.TempDir()

	var html, loc string
	noData := func(what string) {
		t.Helper()
		contains(t, html, `name="token"`, what+": the login form")
		for _, secret := range []string{"cus_CON1", "u_con", "sub_CON1", "jenny.rosen"} {
			require.NotContains(t, html, secret, what+": no data")
		}
	}
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	nav := func(path string) chromedp.Action[chromedp.Void] { return chromedp.Navigate(s.base + path) }

	// Without a cookie, and with a wrong token, every page is the login form and shows no data.
	for _, path := range []string{"/admin/search?q=u_con", "/admin/customers/cus_CON1?livemode=false", "/admin/dead-letters", "/admin/pipeline", "/admin/fail-open"} {
		html, loc = page(t, ctx, "html", nav(path))
		require.Equal(t, s.base+"/admin/", loc, path)
		noData(path)
	}
	shot(t, ctx, dir, "login")
	html, _ = page(t, ctx, "html", chromedp.SendKeys(css("#token"), "wrong"), chromedp.Submit(css("#token")), chromedp.WaitVisible(css("#error")))
	contains(t, html, "not one of ADMIN_TOKENS")
	noData("wrong token")
	html, _ = page(t, ctx, "html", nav("/admin/users/u_con?livemode=false"))
	noData("after a wrong token")

	// Log in, search by email (and by the other ids), open the customer.
	_, loc = page(t, ctx, "html", chromedp.SendKeys(css("#token"), consoleToken), chromedp.Submit(css("#token")), chromedp.WaitVisible(css("#q")))
	require.Equal(t, s.base+"/admin/search", loc)
	html, _ = page(t, ctx, "#results", chromedp.SendKeys(css("#q"), "Jenny.Rosen+cus_CON1@example.com"), chromedp.Submit(css("#q")), chromedp.WaitVisible(css("#results")))
	contains(t, html, "cus_CON1")
	contains(t, html, "email")
	shot(t, ctx, dir, "search")
	for _, q := range []string{"u_con", "cus_CON1", "sub_CON1"} {
		html, _ = page(t, ctx, "#results", nav("/admin/search?q="+url.QueryEscape(q)), chromedp.WaitVisible(css("#results")))
		contains(t, html, map[string]string{"u_con": "/admin/users/u_con", "cus_CON1": "/admin/customers/cus_CON1", "sub_CON1": "subscription sub_CON1"}[q], q)
	}
	html, loc = page(t, ctx, "html", nav("/admin/search?q=sub_CON1"), chromedp.WaitVisible(css("#results")),
		chromedp.Click(css("#results a")), chromedp.WaitVisible(css("#timeline")))
	require.Contains(t, loc, "/admin/customers/cus_CON1?")
	contains(t, html, `"premium": true`)
	for _, raw := range events {
		contains(t, html, ingest.EventIDOf(raw), "every event id is on the page")
	}
	contains(t, html, "sub_CON1 incomplete -&gt; active: active grants access")
	contains(t, html, `id="premium"`, "premium at a glance")
	contains(t, html, `class="legend"`, "a legend for the changed rows")
	// The raw payload opens on click.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(css("#timeline details summary"))))
	visible, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('#timeline details').open && document.querySelector('#timeline details pre').innerText.includes('"object"')`))
	require.NoError(t, err)
	require.True(t, visible, "the payload shows on click")
	shot(t, ctx, dir, "customer")
	// Re-derive.
	html, _ = page(t, ctx, "#flash", chromedp.Click(css("#replay")), chromedp.WaitVisible(css("#flash")))
	contains(t, html, "re-derived")
	// Without STRIPE_API_KEY there is no repair button, and a forged repair (the page's own CSRF
	// token, posted by a script of the page) is refused with the reason and changes nothing.
	html, _ = page(t, ctx, "main", nav("/admin/customers/cus_CON1?livemode=false"), chromedp.WaitVisible(css("#timeline")))
	require.NotContains(t, html, `id="repair"`)
	require.NotContains(t, html, "/repair")
	contains(t, html, "Repair from Stripe needs <code>STRIPE_API_KEY</code>")
	html, loc = page(t, ctx, "main", chromedp.Evaluate[chromedp.Void](`(() => {
		const f = document.getElementById('replay-form').cloneNode(true);
		f.action = '/admin/customers/cus_CON1/repair?livemode=false';
		document.body.appendChild(f);
		f.submit();
	})()`), chromedp.WaitVisible(css("#error")))
	require.Contains(t, loc, "/admin/customers/cus_CON1?livemode=false&failed=")
	contains(t, html, "repair needs STRIPE_API_KEY on the processor")
	contains(t, html, `"premium": true`)
	var repairs int
	require.NoError(t, b.DB.Pool.QueryRow(t.Context(), `SELECT count(*) FROM pending_repairs`).Scan(&repairs))
	require.Zero(t, repairs, "a repair without a key enqueues nothing")
	shot(t, ctx, dir, "repair-without-key")
	// The user page.
	html, _ = page(t, ctx, "html", nav("/admin/users/u_con?livemode=false"), chromedp.WaitVisible(css("#timeline")))
	for _, raw := range events {
		contains(t, html, ingest.EventIDOf(raw))
	}
	// Both modes: the user in every scope with an answer; each customer page in its own scope.
	html, _ = page(t, ctx, "#scopes", nav("/admin/users/u_con"), chromedp.WaitVisible(css("#scopes")))
	require.Equal(t, 3, strings.Count(html, "<tr"), "a header and the live and test answers: %s", html)
	contains(t, html, ">live<")
	contains(t, html, ">test<")
	shot(t, ctx, dir, "user")
	for id, want := range map[string][][]byte{"cus_CONL": live, "cus_CON1": events} {
		html, _ = page(t, ctx, "main", nav("/admin/customers/"+id), chromedp.WaitVisible(css("#timeline")))
		for _, raw := range want {
			contains(t, html, ingest.EventIDOf(raw), id+" in its own scope")
		}
		contains(t, html, map[string]string{"cus_CONL": "live mode", "cus_CON1": "test mode"}[id])
	}

	// Redrive the dead letter.
	html, _ = page(t, ctx, "#deadletters", nav("/admin/dead-letters"), chromedp.WaitVisible(css("#deadletters")))
	contains(t, html, "refused by an older processor")
	shot(t, ctx, dir, "dead-letters")
	html, _ = page(t, ctx, "#flash", chromedp.Click(css("button.redrive")), chromedp.WaitVisible(css("#nodeadletters")))
	contains(t, html, "applied dead letter")
	n, err := eventstore.CountDeadLetters(t.Context(), b.DB.Pool)
	require.NoError(t, err)
	require.Zero(t, n)

	// Fail-open: on, then off, each confirmed.
	for _, want := range []bool{true, false} {
		html, _ = page(t, ctx, "#flash", nav("/admin/fail-open"), chromedp.WaitVisible(css("#flip")),
			chromedp.Click(css("#confirm")), chromedp.Click(css("#flip")), chromedp.WaitVisible(css("#flash")))
		st, err := failopen.Read(t.Context(), b.DB.Pool)
		require.NoError(t, err)
		require.Equal(t, want, st.On, html)
		if want {
			shot(t, ctx, dir, "fail-open")
		}
	}

	// The pipeline, with the last reconcile as `processor reconcile` records it.
	require.NoError(t, reconcile.Record(t.Context(), b.DB.Pool, scope.Scope{}, reconcile.Report{Customers: 2, Subscriptions: 2,
		Drift: []reconcile.Drift{{CustomerID: "cus_CON1", SubscriptionID: "sub_CON1", Kind: "status", Stripe: "canceled", Tollgate: "active"}}}))
	html, _ = page(t, ctx, "#pipeline", nav("/admin/pipeline"), chromedp.WaitVisible(css("#pipeline")))
	contains(t, html, "0 pending")
	contains(t, html, "1 drift in 1 customers")
	contains(t, html, `class="health-warn"`, "the drift needs a look")
	contains(t, html, `class="health-ok"`)
	html, _ = page(t, ctx, "main", chromedp.WaitVisible(css("svg.chart")))
	require.Equal(t, 5, strings.Count(html, `<svg class="chart"`), "events applied, lag, oldest age, notifications, dead letters")
	require.NotContains(t, html, "<script")
	contains(t, html, "Read at <time")
	shot(t, ctx, dir, "pipeline")

	// Usable at 420 px: no page is wider than the screen.
	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(420, 900)))
	for _, path := range []string{"/admin/customers/cus_CON1", "/admin/users/u_con", "/admin/pipeline", "/admin/search?q=u_con"} {
		_, _ = page(t, ctx, "main", nav(path), chromedp.WaitVisible(css("main")))
		width, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
		require.NoError(t, err)
		require.LessOrEqual(t, width, 420, "%s overflows at 420 px", path)
		if path == "/admin/customers/cus_CON1" {
			shot(t, ctx, dir, "customer-narrow")
		}
	}
	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)))
	// GET /admin/login, the address left after a refused login, leads to the form.
	_, loc = page(t, ctx, "main", nav("/admin/login"), chromedp.WaitVisible(css("main")))
	require.Equal(t, s.base+"/admin/", loc)

	// A change without the CSRF token is refused, with the cookie.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.base+"/admin/fail-open", strings.NewReader("on=true&confirm=yes"))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	ck, _ := consoleLogin(t, s.base, consoleToken)
	req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	st, err := failopen.Read(t.Context(), b.DB.Pool)
	require.NoError(t, err)
	require.False(t, st.On)
}
