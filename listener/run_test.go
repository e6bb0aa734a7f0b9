package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/testkit/syncbuf"
	"github.com/tollgate/tollgate/testkit/wait"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/natsconn"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/testkit/natstest"
	"github.com/tollgate/tollgate/testkit/stripetest"
)

// started is a listener process run through run(), as main runs it.
type started struct {
	addr     string // host:port it listens on
	stderr   *syncbuf.Buffer
	cancel   context.CancelFunc // SIGTERM
	finished chan struct{}      // closed when run returned
	err      error              // run's result, once finished
}

// returned reports whether run returned.
func (s *started) returned() bool {
	select {
	case <-s.finished:
		return true
	default:
		return false
	}
}

// wait waits for run to return and gives its result.
func (s *started) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-s.finished:
		return s.err
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return within 30s")
		return nil
	}
}

// start runs `listener` (serve) on 127.0.0.1:0 against natsURL and waits for its "listening" log.
func start(t *testing.T, natsURL string) *started {
	t.Helper()
	return startWith(t, natsURL, nil)
}

// startWith is start with more environment variables.
func startWith(t *testing.T, natsURL string, extra map[string]string) *started {
	t.Helper()
	env := map[string]string{
		"HTTP_ADDR":              "127.0.0.1:0",
		"NATS_URL":               natsURL,
		"STRIPE_WEBHOOK_SECRETS": "whsec_other," + testSecret,
	}
	for k, v := range extra {
		env[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{stderr: &syncbuf.Buffer{}, cancel: cancel, finished: make(chan struct{})}
	go func() {
		defer close(s.finished)
		s.err = run(ctx, nil, func(k string) string { return env[k] }, io.Discard, s.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.finished:
		case <-time.After(30 * time.Second):
			t.Errorf("run did not return after cancel")
		}
		if t.Failed() {
			t.Logf("listener stderr:\n%s", s.stderr.String())
		}
	})

	wait.For(t, 10*time.Second, "listening log line", func() bool {
		s.addr = logField(t, s.stderr.String(), "listening", "addr")
		return s.addr != ""
	})
	return s
}

// logField finds the first JSON log line with msg and returns its field key ("" when none).
func logField(t *testing.T, logs, msg, key string) string {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "every stderr line is a JSON log: %s", line)
		if rec[slog.MessageKey] == msg {
			v, _ := rec[key].(string)
			return v
		}
	}
	return ""
}

func TestRunServesUntilCancelled(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	l := start(t, ns.URL())
	base := "http://" + l.addr

	wait.For(t, 10*time.Second, "ready", func() bool {
		code, _ := httpGet(t, base+"/readyz")
		return code == http.StatusOK
	})
	code, _ := httpGet(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)

	id, customer, raw := newEvent(t)
	resp := stripetest.Deliver(t, base+"/webhooks/stripe", raw, testSecret)
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	require.JSONEq(t, `{"received":true,"duplicate":false}`, string(resp.Body))
	st, err := ns.JetStream(t).Stream(t.Context(), stream.Name)
	require.NoError(t, err)
	msg, err := st.GetLastMsgForSubject(t.Context(), stream.Subject(customer, "customer.subscription.updated"))
	require.NoError(t, err)
	require.Equal(t, id, msg.Header.Get(jetstream.MsgIDHeader))

	l.cancel()
	require.NoError(t, l.wait(t))
	logs := l.stderr.String()
	require.NotEmpty(t, logField(t, logs, "stream ready", "stream"))
	require.Contains(t, logs, `"msg":"stopped"`)
}

// SIGTERM while a webhook is half-received: the listener stops accepting connections, finishes
// that webhook (stored, 200), drains NATS and run returns nil.
func TestRunGracefulShutdownFinishesInFlight(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	l := start(t, ns.URL())
	base := "http://" + l.addr
	wait.For(t, 10*time.Second, "ready", func() bool {
		code, _ := httpGet(t, base+"/readyz")
		return code == http.StatusOK
	})

	_, customer, raw := newEvent(t)
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/webhooks/stripe", pr)
	require.NoError(t, err)
	req.ContentLength = int64(len(raw))
	req.Header.Set("Stripe-Signature", stripetest.Sign(raw, testSecret))
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	type answer struct {
		status int
		body   []byte
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		answered <- answer{resp.StatusCode, b, err}
	}()
	half := len(raw) / 2
	_, err = pw.Write(raw[:half])
	require.NoError(t, err)
	wait.For(t, 10*time.Second, "webhook in flight", func() bool {
		_, metrics := httpGet(t, base+"/metrics")
		return strings.Contains(metrics, "tollgate_listener_webhooks_in_flight 1")
	})

	l.cancel() // SIGTERM
	wait.For(t, 10*time.Second, "listener closed to new connections", func() bool {
		d := net.Dialer{Timeout: 100 * time.Millisecond}
		c, err := d.DialContext(t.Context(), "tcp", l.addr)
		if err == nil {
			_ = c.Close()
		}
		return err != nil
	})
	require.False(t, l.returned(), "run returned with a webhook in flight")

	_, err = pw.Write(raw[half:])
	require.NoError(t, err)
	require.NoError(t, pw.Close())
	a := <-answered
	require.NoError(t, a.err)
	require.Equal(t, http.StatusOK, a.status, string(a.body))
	require.JSONEq(t, `{"received":true,"duplicate":false}`, string(a.body))
	require.NoError(t, l.wait(t))
	st, err := ns.JetStream(t).Stream(t.Context(), stream.Name)
	require.NoError(t, err)
	msg, err := st.GetLastMsgForSubject(t.Context(), stream.Subject(customer, "customer.subscription.updated"))
	require.NoError(t, err)
	require.Equal(t, raw, msg.Data)
}

func TestRunConfigErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no secrets", map[string]string{}, "STRIPE_WEBHOOK_SECRETS is required"},
		{"not a whsec secret", map[string]string{"STRIPE_WEBHOOK_SECRETS": "sk_live_1"}, "STRIPE_WEBHOOK_SECRETS"},
		{"bad tolerance", map[string]string{"STRIPE_WEBHOOK_SECRETS": testSecret, "STRIPE_WEBHOOK_TOLERANCE": "five minutes"}, "STRIPE_WEBHOOK_TOLERANCE"},
		{"bad body limit", map[string]string{"STRIPE_WEBHOOK_SECRETS": testSecret, "MAX_BODY_BYTES": "1MB"}, "MAX_BODY_BYTES"},
		{"bad NATS URL", map[string]string{"STRIPE_WEBHOOK_SECRETS": testSecret, "NATS_URL": "localhost"}, "NATS_URL"},
		{"bad HTTP address", map[string]string{"STRIPE_WEBHOOK_SECRETS": testSecret, "HTTP_ADDR": "127.0.0.1:notaport", "NATS_URL": "nats://127.0.0.1:1"}, "HTTP_ADDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := run(t.Context(), nil, func(k string) string { return tt.env[k] }, io.Discard, io.Discard)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestRunCommands(t *testing.T) {
	t.Parallel()
	getenv := func(string) string { return "" }

	var stdout, stderr bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"help"}, getenv, &stdout, &stderr))
	require.Contains(t, stdout.String(), "Usage: listener")
	require.NotContains(t, stdout.String(), "STRIPE_API_KEY", "the listener holds no Stripe API key")
	require.NotContains(t, stdout.String(), "DATABASE_URL", "the listener never connects to Postgres")

	for _, moved := range []string{"backfill", "reconcile"} {
		err := run(t.Context(), []string{moved}, getenv, io.Discard, io.Discard)
		require.ErrorContains(t, err, "moved to the processor: run processor "+moved)
	}

	stdout.Reset()
	err := run(t.Context(), []string{"frobnicate"}, getenv, &stdout, &stderr)
	require.ErrorContains(t, err, `unknown command "frobnicate"`)
	require.Contains(t, stderr.String(), "Usage: listener")
	require.Empty(t, stdout.String())

	require.ErrorContains(t, run(t.Context(), []string{"serve", "extra"}, getenv, io.Discard, io.Discard), "serve takes no arguments")
}

func TestRunHealthcheck(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	l := start(t, ns.URL())
	getenv := func(k string) string {
		if k == "HTTP_ADDR" {
			return l.addr
		}
		return ""
	}
	wait.For(t, 10*time.Second, "healthcheck passes", func() bool {
		return run(t.Context(), []string{"healthcheck"}, getenv, io.Discard, io.Discard) == nil
	})

	ns.Shutdown()
	wait.For(t, 10*time.Second, "healthcheck fails without NATS", func() bool {
		err := run(t.Context(), []string{"healthcheck"}, getenv, io.Discard, io.Discard)
		return err != nil && strings.Contains(err.Error(), "503")
	})
}

// ensureStream waits for JetStream: it keeps retrying while the server is down and succeeds
// once it is back, and gives up after its bound.
func TestEnsureStreamRetriesUntilJetStreamIsUp(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	ns.Shutdown()
	logs := &syncbuf.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	conn, err := natsconn.Connect(ns.URL(), "tollgate-listener", "test", logger)
	require.NoError(t, err, "the first connection is retried, not refused")
	nc, closed := conn.Conn, conn.Closed()
	t.Cleanup(func() { nc.Close(); <-closed })
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	err = ensureStream(t.Context(), js, stream.Options{}, logger, 300*time.Millisecond)
	require.ErrorContains(t, err, "JetStream stream STRIPE_EVENTS not ready after")
	require.ErrorIs(t, err, context.DeadlineExceeded)

	ensured := make(chan error, 1)
	go func() { ensured <- ensureStream(t.Context(), js, stream.Options{}, logger, 30*time.Second) }()
	wait.For(t, 10*time.Second, "a failed attempt logged", func() bool {
		return strings.Count(logs.String(), "stream not ready yet; retrying") >= 3
	})
	ns.Restart(t)
	select {
	case err := <-ensured:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("ensureStream did not return after JetStream came back")
	}
	_, err = js.Stream(t.Context(), stream.Name)
	require.NoError(t, err)
}

// A work-queue stream of a development build cannot be updated: ensureStream fails at once with
// the fix instead of retrying for its whole bound, and leaves the stream as it is.
func TestEnsureStreamRefusesAWorkQueueAtOnce(t *testing.T) {
	t.Parallel()
	js := natstest.Start(t).JetStream(t)
	wq := stream.Config(stream.Options{})
	wq.Retention = jetstream.WorkQueuePolicy
	_, err := js.CreateStream(t.Context(), wq)
	require.NoError(t, err)

	began := time.Now()
	err = ensureStream(t.Context(), js, stream.Options{}, slog.New(slog.DiscardHandler), time.Minute)
	require.ErrorIs(t, err, stream.ErrWorkQueue)
	require.ErrorContains(t, err, "nats stream rm STRIPE_EVENTS")
	require.Less(t, time.Since(began), 10*time.Second, "not retried")
	s, err := js.Stream(t.Context(), stream.Name)
	require.NoError(t, err)
	require.Equal(t, jetstream.WorkQueuePolicy, s.CachedInfo().Config.Retention)
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) {
			return 0, err.Error()
		}
		require.NoError(t, err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}
