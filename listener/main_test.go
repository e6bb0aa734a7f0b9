package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/testkit/syncbuf"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/natsconn"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/testkit/natstest"
	"github.com/tollgate/tollgate/testkit/stripetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testSecret signs the events of the tests.
const testSecret = "whsec_test_listener"

// bundle is one listener wired to its own embedded JetStream.
type bundle struct {
	nats   *natstest.Server
	nc     *nats.Conn
	stream jetstream.Stream
	cfg    config.Listener
	srv    *server
	url    string // the webhook endpoint over real HTTP (httptest)
	base   string // the httptest server's root URL
	logs   *syncbuf.Buffer
}

type setupOptions struct {
	natsOptions func(*natsserver.Options)
	config      func(*config.Listener)
}

func setup(t *testing.T) *bundle {
	t.Helper()
	return setupWith(t, setupOptions{})
}

// setupWith starts JetStream (file storage, fsync always), ensures the stream, connects like
// the listener does and serves a new server on a loopback port.
func setupWith(t *testing.T, opts setupOptions) *bundle {
	t.Helper()
	if opts.natsOptions == nil {
		opts.natsOptions = func(*natsserver.Options) {}
	}
	ns := natstest.StartWithOptions(t, opts.natsOptions)
	cfg, err := config.LoadListener(func(name string) string {
		if name == "STRIPE_WEBHOOK_SECRETS" {
			return testSecret
		}
		return ""
	})
	require.NoError(t, err)
	cfg.NATSURL = ns.URL()
	if opts.config != nil {
		opts.config(&cfg)
	}

	logs := &syncbuf.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	conn, err := natsconn.Connect(cfg.NATSURL, "tollgate-listener", "test", logger)
	require.NoError(t, err)
	nc, closed := conn.Conn, conn.Closed()
	t.Cleanup(func() {
		nc.Close()
		<-closed // the closed handler has run: no goroutine outlives the test
	})
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, ensureStream(t.Context(), js, stream.Options{}, logger, 10*time.Second))
	st, err := js.Stream(t.Context(), stream.Name)
	require.NoError(t, err)

	srv := newServer(cfg, nc, js, logger, prometheus.NewRegistry())
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("listener logs:\n%s", logs.String())
		}
	})
	return &bundle{nats: ns, nc: nc, stream: st, cfg: cfg, srv: srv, url: hs.URL + "/webhooks/stripe", base: hs.URL, logs: logs}
}

// msgCount is the number of messages in the stream.
func (b *bundle) msgCount(t *testing.T) uint64 {
	t.Helper()
	info, err := b.stream.Info(t.Context())
	require.NoError(t, err)
	return info.State.Msgs
}

// get answers a GET of path through the real HTTP server.
func (b *bundle) get(t *testing.T, path string) (int, string) {
	t.Helper()
	return httpGet(t, b.base+path)
}

// eventSeq makes ids unique across tests that share nothing but this process.
var eventSeq atomic.Int64 //nolint:gochecknoglobals // test-only counter

// newEvent returns a realistic signed-to-be subscription event of a fresh id and customer.
func newEvent(t testing.TB) (id, customer string, raw []byte) {
	t.Helper()
	n := eventSeq.Add(1)
	id, customer = fmt.Sprintf("evt_test_%d", n), fmt.Sprintf("cus_test_%d", n)
	raw = stripetest.Event{
		ID:     id,
		Type:   "customer.subscription.updated",
		Object: stripetest.Subscription(fmt.Sprintf("sub_test_%d", n), customer, "active", "price_pro"),
	}.JSON(t)
	return id, customer, raw
}

// requireError checks an error answer of the contract.
func requireError(t *testing.T, resp stripetest.Response, status int, code string) {
	t.Helper()
	require.Equal(t, status, resp.Status, string(resp.Body))
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	require.Contains(t, string(resp.Body), `{"error":{"code":"`+code+`","message":"`)
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// unbound is STRIPE_WEBHOOK_SECRETS of bare whsec_… entries, which sign either mode.
func unbound(secrets ...string) []config.WebhookSecret {
	out := make([]config.WebhookSecret, len(secrets))
	for i, s := range secrets {
		out[i] = config.WebhookSecret{Secret: s}
	}
	return out
}
