package e2e_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/scenario"
	"github.com/tollgate/tollgate/e2e/stack"
	"github.com/tollgate/tollgate/testkit/wait"
)

// grantSink receives the notifications of TestGrants and answers every one 200, recording each
// answer with the time it arrived (the expiry latency is measured from them).
type grantSink struct {
	srv    *httptest.Server
	secret string
	mu     sync.Mutex
	got    []grantNote
}

type grantNote struct {
	at  time.Time
	seq int64
	ans grantAnswer
}

// grantAnswer is what TestGrants reads of an answer (the query API's or a notification's).
type grantAnswer struct {
	UserID      string           `json:"user_id"`
	CustomerIDs []string         `json:"customer_ids"`
	Premium     bool             `json:"premium"`
	Status      string           `json:"status"`
	Features    []string         `json:"features"`
	Limits      map[string]int64 `json:"limits"`
	Grants      []struct {
		ID     string     `json:"id"`
		Until  *time.Time `json:"until"`
		Reason string     `json:"reason"`
		By     string     `json:"by"`
	} `json:"grants"`
}

func newGrantSink(t *testing.T) *grantSink {
	t.Helper()
	s := &grantSink{secret: "whsec_" + base64.StdEncoding.EncodeToString([]byte("grants-e2e-notify-secret-32bytes"))}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body struct {
			Sequence int64       `json:"sequence"`
			Data     grantAnswer `json:"data"`
		}
		if json.Unmarshal(b, &body) == nil {
			s.mu.Lock()
			s.got = append(s.got, grantNote{at: time.Now(), seq: body.Sequence, ans: body.Data})
			s.mu.Unlock()
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// of is the notifications of a user, one per sequence, in sequence order.
func (s *grantSink) of(user string) []grantNote {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []grantNote
	seen := map[int64]bool{}
	for _, n := range s.got {
		if n.ans.UserID == user && !seen[n.seq] {
			seen[n.seq] = true
			out = append(out, n)
		}
	}
	// In the order of their sequence, as a receiver reads them: the notifier posts the ones
	// due together in parallel, so two recorded a moment apart may arrive in either order.
	slices.SortFunc(out, func(a, b grantNote) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

type grantEnv struct {
	st   *stack.Stack
	db   *pgxpool.Pool
	sink *grantSink
	http *http.Client
	bin  string
}

// admin calls the processor's admin API and returns the status and body.
func (e *grantEnv) admin(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, e.st.URL(stack.Processor)+path, r)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+e.st.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.http.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

// answer is the query API's answer for a user (test mode, the stack's default).
func (e *grantEnv) answer(t *testing.T, user string) (int, grantAnswer) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, e.st.URL(stack.QueryAPI)+"/v1/users/"+user+"/entitlement", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+e.st.Token)
	resp, err := e.http.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	var a grantAnswer
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&a))
	}
	return resp.StatusCode, a
}

// answerWhen waits until the query API's answer for user satisfies ok (its cache follows the
// read model's notifications within moments), and returns it.
func (e *grantEnv) answerWhen(t *testing.T, user, what string, ok func(status int, a grantAnswer) bool) (int, grantAnswer) {
	t.Helper()
	var status int
	var a grantAnswer
	wait.For(t, 10*time.Second, user+": "+what, func() bool {
		status, a = e.answer(t, user)
		return ok(status, a)
	})
	return status, a
}

// rawAnswer is the query API's answer for user as it was sent.
func (e *grantEnv) rawAnswer(t *testing.T, user string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, e.st.URL(stack.QueryAPI)+"/v1/users/"+user+"/entitlement", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+e.st.Token)
	resp, err := e.http.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

func (e *grantEnv) send(t *testing.T, ev scenario.Event) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, e.st.URL(stack.Listener)+"/webhooks/stripe", bytes.NewReader(ev.Payload))
	require.NoError(t, err)
	req.Header.Set("Stripe-Signature", scenario.Sign(ev.Payload, e.st.WebhookSecret))
	resp, err := e.http.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

type grantBody struct {
	ID        string           `json:"id"`
	UserID    string           `json:"user_id"`
	Features  []string         `json:"features"`
	Limits    map[string]int64 `json:"limits"`
	Until     *time.Time       `json:"until"`
	Reason    string           `json:"reason"`
	By        string           `json:"by"`
	EndedAt   *time.Time       `json:"ended_at"`
	EndedWhy  *string          `json:"ended_why"`
	CreatedAt time.Time        `json:"created_at"`
}

func (e *grantEnv) give(t *testing.T, user string, features []string, limits map[string]int64, until *time.Time, reason string) grantBody {
	t.Helper()
	status, b := e.admin(t, http.MethodPost, "/admin/v1/grants", map[string]any{
		"user_id": user, "livemode": false, "account": nil, "features": features, "limits": limits, "until": until, "reason": reason})
	require.Equal(t, http.StatusCreated, status, "%s", b)
	var g grantBody
	require.NoError(t, json.Unmarshal(b, &g))
	return g
}

// TestGrants proves grants through the real binaries (listener, processor, query API,
// nats-server, Postgres): a grant adds to what a subscription gives (features, and limits summed
// with the plans file's, seats from the item's quantity), a user known only by a grant is
// answered, a revoke ends one at once, the command line does the same, and grants expire within
// 2 s of their until with no request, once, across a kill -9 of the processor and with two
// processors running the expiry. It logs the expiry latency (p50/p99, from until to the
// notification's arrival).
func TestGrants(t *testing.T) {
	binDir, natsBin := buildBinaries(t)
	sink := newGrantSink(t)
	plans := filepath.Join(t.TempDir(), "plans.json")
	require.NoError(t, os.WriteFile(plans, []byte(`{"price_pro_monthly": {"features": ["pro"], "limits": {"projects": 10, "seats": "quantity"}}}`), 0o600))
	st, _ := startSharedStack(t, binDir, natsBin, "grants",
		map[string]string{"NOTIFY_URLS": sink.srv.URL + "/hooks", "NOTIFY_SECRET": sink.secret, "PLANS_FILE": plans})
	ctx := context.Background()
	db, err := pgxpool.New(ctx, st.DatabaseURL)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	e := &grantEnv{st: st, db: db, sink: sink, http: &http.Client{Timeout: 15 * time.Second}, bin: filepath.Join(binDir, "processor")}

	// A subscriber with 4 seats: projects 10 and seats 4 from the plans file.
	c := scenario.NewCustomer("grt", 0)
	c.Quantity = 4
	at := time.Now().Add(-time.Hour).Unix()
	e.send(t, c.CustomerCreated(at))
	e.send(t, c.SubscriptionEvent("customer.subscription.created", "active", at+1, nil))
	wait.For(t, 30*time.Second, "the subscriber's answer", func() bool {
		status, a := e.answer(t, c.UserID)
		return status == http.StatusOK && a.Limits["seats"] == 4
	})
	_, a := e.answer(t, c.UserID)
	require.Equal(t, map[string]int64{"projects": 10, "seats": 4}, a.Limits)
	require.Equal(t, []string{"pro"}, a.Features)

	// A grant on top: features join, limits add; the notification carries it.
	g := e.give(t, c.UserID, []string{"export"}, map[string]int64{"projects": 5}, nil, "partner")
	require.Regexp(t, `^grt_`, g.ID)
	require.Equal(t, "admin", g.By, "the admin token's name")
	_, a = e.answerWhen(t, c.UserID, "the grant in the answer", func(_ int, a grantAnswer) bool { return len(a.Grants) == 1 })
	require.Equal(t, map[string]int64{"projects": 15, "seats": 4}, a.Limits)
	require.Equal(t, []string{"export", "pro"}, a.Features)
	t.Logf("an answer with limits and a grant: %s", e.rawAnswer(t, c.UserID))
	require.Len(t, a.Grants, 1)
	require.Equal(t, "partner", a.Grants[0].Reason)
	wait.For(t, 10*time.Second, "the grant's notification", func() bool {
		ns := sink.of(c.UserID)
		return len(ns) > 0 && ns[len(ns)-1].ans.Limits["projects"] == 15
	})

	// Refusals say why.
	past := time.Now().Add(-time.Minute)
	for _, body := range []map[string]any{
		{"user_id": "u_x", "livemode": false, "features": []string{"premium"}, "until": past, "reason": "late"},
		{"user_id": "u_x", "livemode": false, "features": []string{}, "limits": map[string]int64{}, "reason": "nothing"},
		{"user_id": "u_x", "livemode": false, "limits": map[string]int64{"pro": 1}, "reason": "a feature as a limit"},
	} {
		status, b := e.admin(t, http.MethodPost, "/admin/v1/grants", body)
		require.Equal(t, http.StatusBadRequest, status, "%s", b)
		require.Contains(t, string(b), `"message"`)
	}

	// A user known only by a grant.
	e.give(t, "u_grt_comp", []string{"premium"}, nil, nil, "support comp")
	_, a = e.answerWhen(t, "u_grt_comp", "answered", func(status int, _ grantAnswer) bool { return status == http.StatusOK })
	require.Equal(t, []string{}, a.CustomerIDs)
	require.Equal(t, "none", a.Status)
	require.True(t, a.Premium)

	// Revoke ends it at once; again is a conflict; the list keeps it with why it ended.
	status, b := e.admin(t, http.MethodDelete, "/admin/v1/grants/"+g.ID, nil)
	require.Equal(t, http.StatusOK, status, "%s", b)
	_, a = e.answerWhen(t, c.UserID, "the revoked grant gone", func(_ int, a grantAnswer) bool { return len(a.Grants) == 0 })
	require.Equal(t, map[string]int64{"projects": 10, "seats": 4}, a.Limits)
	status, b = e.admin(t, http.MethodDelete, "/admin/v1/grants/"+g.ID, nil)
	require.Equal(t, http.StatusConflict, status, "%s", b)
	status, _ = e.admin(t, http.MethodDelete, "/admin/v1/grants/grt_000000000000000000000000", nil)
	require.Equal(t, http.StatusNotFound, status)
	status, b = e.admin(t, http.MethodGet, "/admin/v1/users/"+c.UserID+"/grants?livemode=false", nil)
	require.Equal(t, http.StatusOK, status, "%s", b)
	var list struct {
		Grants []grantBody `json:"grants"`
	}
	require.NoError(t, json.Unmarshal(b, &list), "%s", b)
	require.Len(t, list.Grants, 1)
	require.Equal(t, "revoked", *list.Grants[0].EndedWhy)
	require.NotNil(t, list.Grants[0].EndedAt)

	// The user timeline shows the grant with its why.
	status, b = e.admin(t, http.MethodGet, "/admin/v1/users/"+c.UserID+"/timeline?livemode=false", nil)
	require.Equal(t, http.StatusOK, status, "%s", b)
	require.Contains(t, string(b), g.ID+" by admin until revoked: partner")

	// The command line: add, list, revoke.
	out := e.cli(t, "grant", "add", "--user", "u_grt_cli", "--livemode=false", "--feature", "beta", "--limit", "projects=3",
		"--reason", "beta tester", "--by", "ops")
	cliID := strings.TrimSpace(out[strings.Index(out, "grt_"):][:28])
	_, a = e.answerWhen(t, "u_grt_cli", "answered", func(status int, _ grantAnswer) bool { return status == http.StatusOK })
	require.Equal(t, []string{"beta"}, a.Features)
	require.False(t, a.Premium, "a grant of beta gives that feature, not premium")
	require.Contains(t, e.cli(t, "grant", "list", "--user", "u_grt_cli", "--livemode=false"), cliID)
	e.cli(t, "grant", "revoke", cliID, "--reason", "done", "--by", "ops")
	e.answerWhen(t, "u_grt_cli", "gone: its only grant ended", func(status int, _ grantAnswer) bool { return status == http.StatusNotFound })

	// Expiry: a second processor runs the expiry too; grants due from 8 s on, the first
	// processor killed (kill -9) before the first is due and restarted; one grant due while the
	// processors are down is expired on restart. Each expires once.
	p2, err := st.AddInstance(ctx, stack.Processor, "processor-2", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	require.NoError(t, err)
	const n = 60
	start := time.Now().Add(8 * time.Second).Truncate(time.Millisecond)
	untils := map[string]time.Time{}
	var ids []string
	for i := range n {
		until := start.Add(time.Duration(i) * 150 * time.Millisecond)
		user := fmt.Sprintf("u_grt_exp%d", i)
		g := e.give(t, user, []string{"premium"}, nil, &until, "support extension")
		untils[user] = until
		ids = append(ids, g.ID)
	}
	wait.For(t, 10*time.Second, "every grant's first notification", func() bool {
		for user := range untils {
			if len(sink.of(user)) == 0 {
				return false
			}
		}
		return true
	})
	e.st.Process(stack.Processor).Kill()
	time.Sleep(time.Second)
	p, err := e.st.Process(stack.Processor).Restart(ctx)
	require.NoError(t, err)
	require.NoError(t, p.WaitReady(ctx, 60*time.Second))

	last := start.Add(time.Duration(n-1) * 150 * time.Millisecond)
	wait.For(t, time.Until(last)+20*time.Second, "every grant expired and notified", func() bool {
		for user := range untils {
			ns := sink.of(user)
			if len(ns) < 2 || ns[len(ns)-1].ans.Premium {
				return false
			}
		}
		return true
	})
	var latencies []time.Duration
	for user, until := range untils {
		ns := sink.of(user)
		require.Len(t, ns, 2, "%s: one notification for the grant, one for its expiry", user)
		require.False(t, ns[1].ans.Premium)
		latencies = append(latencies, ns[1].at.Sub(until))
		e.answerWhen(t, user, "nothing left after the expiry", func(status int, _ grantAnswer) bool { return status == http.StatusNotFound })
	}
	var expired int
	require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM grant_log WHERE action = 'expired' AND grant_id = ANY($1)`, ids).Scan(&expired))
	require.Equal(t, n, expired, "each grant expired once")
	slices.Sort(latencies)
	p50, p99 := quantile(latencies, 0.50), quantile(latencies, 0.99)
	t.Logf("expiry latency (until -> notification received), %d grants, 2 processors, one killed before the first until: p50 %.0f ms, p99 %.0f ms, max %.0f ms",
		n, ms(p50), ms(p99), ms(latencies[len(latencies)-1]))
	require.Less(t, latencies[len(latencies)-1], 2*time.Second, "every grant's expiry within 2 s of its until")

	// A grant due while every processor is down expires when one comes back, once.
	soon := time.Now().Add(2 * time.Second)
	down := e.give(t, "u_grt_down", []string{"premium"}, nil, &soon, "short")
	p2.Kill()
	e.st.Process(stack.Processor).Kill()
	time.Sleep(time.Until(soon) + time.Second)
	p, err = e.st.Process(stack.Processor).Restart(ctx)
	require.NoError(t, err)
	require.NoError(t, p.WaitReady(ctx, 60*time.Second))
	wait.For(t, 10*time.Second, "the grant due while down expired", func() bool {
		status, _ := e.answer(t, "u_grt_down")
		return status == http.StatusNotFound
	})
	require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM grant_log WHERE action = 'expired' AND grant_id = $1`, down.ID).Scan(&expired))
	require.Equal(t, 1, expired)
}

// cli runs the processor binary with the stack's database and returns its output; it fails the
// test on a non-zero exit.
func (e *grantEnv) cli(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+e.st.DatabaseURL, "NATS_URL=nats://127.0.0.1:1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "processor %s: %s", strings.Join(args, " "), out)
	return string(out)
}
