package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/cli"
	"github.com/tollgate/tollgate/processor/internal/processortest"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/migrations"
	"github.com/tollgate/tollgate/pkg/catalogue"
	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/testkit/natstest"
	"github.com/tollgate/tollgate/testkit/pgtest"
	"github.com/tollgate/tollgate/testkit/syncbuf"
	"github.com/tollgate/tollgate/testkit/wait"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestRunUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"unknown command", []string{"bogus"}},
		{"serve with arguments", []string{"serve", "now"}},
		{"migrate with arguments", []string{"migrate", "up"}},
		{"replay without a target", []string{"replay"}},
		{"replay with both targets", []string{"replay", "--all", "--customer", "cus_1"}},
		{"replay with an unknown flag", []string{"replay", "--everything"}},
		{"replay with positional arguments", []string{"replay", "--all", "cus_1"}},
		{"dlq without subcommand", []string{"dlq"}},
		{"dlq with an unknown subcommand", []string{"dlq", "purge"}},
		{"dlq redrive with two ids", []string{"dlq", "redrive", "evt_1", "evt_2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			err := run(t.Context(), tc.args, envOf(nil), &out, &errOut)
			require.ErrorIs(t, err, cli.ErrUsage)
			require.Empty(t, out.String())
		})
	}

	var out, errOut bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"help"}, envOf(nil), &out, &errOut))
	require.Contains(t, out.String(), "replay --customer ID")
	require.Contains(t, out.String(), "dlq redrive [EVENT_ID]")
	out.Reset()
	require.ErrorIs(t, run(t.Context(), []string{"bogus"}, envOf(nil), &out, &errOut), cli.ErrUsage)
	require.Contains(t, errOut.String(), "Usage: processor", "usage on stderr for an unknown command")
}

func TestRunConfigurationErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	invalid := filepath.Join(dir, "plans.json")
	require.NoError(t, os.WriteFile(invalid, []byte(`{"price_1": "pro"}`), 0o600))
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"missing plans file", map[string]string{"PLANS_FILE": filepath.Join(dir, "nope.json")}, []string{"PLANS_FILE=", "no such file"}},
		{"invalid plans file", map[string]string{"PLANS_FILE": invalid}, []string{"PLANS_FILE=", "invalid plans file", "price_1"}},
		{"past due not a boolean", map[string]string{"PAST_DUE_GRANTS": "sometimes"}, []string{"PAST_DUE_GRANTS"}},
		{"database url not postgres", map[string]string{"DATABASE_URL": "mysql://localhost/tollgate"}, []string{"DATABASE_URL"}},
		{"nats url not a url", map[string]string{"NATS_URL": "::"}, []string{"NATS_URL"}},
	} {
		for _, args := range [][]string{{"serve"}, {"replay", "--all"}, {"dlq", "redrive"}} {
			t.Run(tc.name+"/"+args[0], func(t *testing.T) {
				t.Parallel()
				err := run(t.Context(), args, envOf(tc.env), io.Discard, io.Discard)
				require.Error(t, err)
				for _, w := range tc.want {
					require.Contains(t, err.Error(), w)
				}
			})
		}
	}
}

func TestRunMigrate(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmpty(t)
	env := envOf(map[string]string{"DATABASE_URL": db.URL})

	err := run(t.Context(), []string{"dlq", "list"}, env, io.Discard, io.Discard)
	require.ErrorContains(t, err, "run processor migrate", "commands refuse an old schema")

	for range 2 { // idempotent
		var out bytes.Buffer
		require.NoError(t, run(t.Context(), []string{"migrate"}, env, &out, io.Discard))
		require.Contains(t, out.String(), "schema at version")
	}
	v, dirty, err := migrations.Current(db.URL)
	require.NoError(t, err)
	require.False(t, dirty)
	require.EqualValues(t, migrations.Version, v)

	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"dlq", "list"}, env, &out, io.Discard))
	require.Equal(t, "no dead letters\n", out.String())

	err = run(t.Context(), []string{"migrate"}, envOf(map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=1"}), io.Discard, io.Discard)
	require.ErrorContains(t, err, "DATABASE_URL")
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := (&net.ListenConfig{}).Listen(tb.Context(), "tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	addr := ln.Addr().String()
	require.NoError(tb, ln.Close())
	return addr
}

func httpGet(tb testing.TB, url string) (int, string) {
	tb.Helper()
	req, err := http.NewRequestWithContext(tb.Context(), http.MethodGet, url, nil)
	require.NoError(tb, err)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.NoError(tb, err)
	return resp.StatusCode, string(body)
}

func TestServeEndToEnd(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	db := pgtest.NewEmpty(t) // serve applies the migrations itself
	addr := freeAddr(t)
	plans := filepath.Join(t.TempDir(), "plans.json")
	require.NoError(t, os.WriteFile(plans, []byte(`{"price_other": ["premium", "pro"], "prod_team": ["export", "pro"]}`), 0o600))
	env := envOf(map[string]string{"HTTP_ADDR": addr, "NATS_URL": b.Nats.URL(), "DATABASE_URL": db.URL, "PLANS_FILE": plans})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncbuf.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, env, &stdout, &stderr) }()

	wait.For(t, 20*time.Second, "readyz answers 200", func() bool {
		status, _ := httpGet(t, "http://"+addr+"/readyz")
		return status == http.StatusOK
	})
	require.NoError(t, run(t.Context(), []string{"healthcheck"}, env, io.Discard, io.Discard))
	// The flag catalogue the query API's /ofrep reads: PLANS_FILE's feature names.
	flags, err := catalogue.Load(t.Context(), db.Pool)
	require.NoError(t, err)
	require.Equal(t, []string{"export", "premium", "pro"}, flags.Names())

	k := processortest.NewKit(t, "e")
	events := k.Signup("cus_e", "u_e", "sub_e", "price_basic", processortest.T0)
	b.Publish(t, events...)
	b.PublishRaw(t, "stripe.events._none.garbage", []byte(`{"id": 7}`))
	processortest.CaughtUp(t, db.Pool, processortest.Expect(t, b.Rules, events...), 20*time.Second)
	v, err := entitlement.GetUser(t.Context(), db.Pool, scope.Key{ID: "u_e"})
	require.NoError(t, err)
	require.True(t, v.Premium)
	wait.For(t, 15*time.Second, "metrics show the dead letter", func() bool {
		_, body := httpGet(t, "http://"+addr+"/metrics")
		return strings.Contains(body, "tollgate_processor_dead_letters 1") &&
			strings.Contains(body, `tollgate_processor_events_total{type="invoice.paid"} 1`) &&
			strings.Contains(body, "tollgate_processor_consumer_pending 0")
	})

	cancel() // SIGTERM
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
	require.Empty(t, stdout.String())
	sc := bufio.NewScanner(strings.NewReader(stderr.String()))
	lines := 0
	for sc.Scan() {
		var line map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line), "every stderr line is JSON: %s", sc.Text())
		require.Contains(t, line, "msg")
		lines++
	}
	require.Positive(t, lines)
	require.Contains(t, stderr.String(), `"msg":"stopped"`)
}

func TestServeWaitsForPostgresAtStart(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	db := pgtest.NewEmpty(t)
	cc := db.Pool.Config().ConnConfig
	proxy := newTCPProxy(t, net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))))
	proxy.cut()
	addr := freeAddr(t)
	env := envOf(map[string]string{"HTTP_ADDR": addr, "NATS_URL": b.Nats.URL(), "DATABASE_URL": proxy.proxyURL(t, db.URL)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncbuf.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, env, io.Discard, &stderr) }()

	wait.For(t, 10*time.Second, "healthz answers while Postgres is away", func() bool {
		status, _ := httpGet(t, "http://"+addr+"/healthz")
		return status == http.StatusOK
	})
	wait.For(t, 10*time.Second, "the migrations are retried", func() bool {
		return strings.Count(stderr.String(), "cannot apply migrations yet") >= 2
	})
	status, body := httpGet(t, "http://"+addr+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, status)
	require.Contains(t, body, `"ready":false`)

	proxy.restore()
	wait.For(t, 20*time.Second, "ready once Postgres answers", func() bool {
		status, _ := httpGet(t, "http://"+addr+"/readyz")
		return status == http.StatusOK
	})
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
}

// NATS_CREDS: the processor serves (ready: NATS connected, the stream ensured) against a server
// with decentralised auth when given its .creds file.
func TestServeWithNATSCreds(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	ns, creds := natstest.StartWithCreds(t)
	s := bundleServeWithEnv(b, t, map[string]string{"NATS_URL": ns.URL(), "NATS_CREDS": creds})
	wait.For(t, 20*time.Second, "the processor is ready", func() bool {
		code, _ := httpGet(t, s.base+"/readyz")
		return code == http.StatusOK
	})
}
