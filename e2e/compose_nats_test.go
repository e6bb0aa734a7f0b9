package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/scenario"
	"github.com/tollgate/tollgate/e2e/stack"
	"github.com/tollgate/tollgate/testkit/pgtest"
	"github.com/tollgate/tollgate/testkit/wait"

	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/pkg/stripeevent"
)

// composeNATS runs a real nats-server with the compose file's NATS config (its store in a
// temporary directory, on a free port, without the monitoring port) and returns the URL of each
// service as compose gives it, pointed at that server.
func composeNATS(t *testing.T) (srv *natsserver.Server, urls map[string]string) {
	t.Helper()
	p := loadCompose(t)
	conf := p.Configs["nats_conf"].Content
	require.Contains(t, conf, "store_dir: /data")
	conf = strings.Replace(conf, "store_dir: /data", fmt.Sprintf("store_dir: %q", t.TempDir()), 1)
	path := filepath.Join(t.TempDir(), "nats.conf")
	require.NoError(t, os.WriteFile(path, []byte(conf), 0o600))
	opts, err := natsserver.ProcessConfigFile(path)
	require.NoError(t, err, "the compose NATS config parses:\n%s", conf)
	opts.Host, opts.Port, opts.HTTPPort, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, 0, true, true
	opts.SyncAlways = false // fsync per write is the deployment's durability, not what is tested here
	srv, err = natsserver.NewServer(opts)
	require.NoError(t, err)
	go srv.Start()
	require.True(t, srv.ReadyForConnections(10*time.Second), "nats-server with the compose config")
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })

	urls = map[string]string{}
	for name, svc := range p.Services {
		v, ok := svc.Environment["NATS_URL"]
		if !ok {
			continue
		}
		u, err := url.Parse(*v)
		require.NoError(t, err)
		u.Host = strings.TrimPrefix(srv.ClientURL(), "nats://")
		urls[name] = u.String()
	}
	return srv, urls
}

// conn connects to url and collects the server's asynchronous errors (permission violations).
type conn struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	mu   sync.Mutex
	errs []string
}

func connect(t *testing.T, url string) (*conn, error) {
	t.Helper()
	c := &conn{}
	nc, err := nats.Connect(url, nats.MaxReconnects(0), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		c.mu.Lock()
		c.errs = append(c.errs, err.Error())
		c.mu.Unlock()
	}))
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	c.js, err = jetstream.New(nc)
	require.NoError(t, err)
	return c, nil
}

// violated waits for a permission violation naming subject.
func (c *conn) violated(t *testing.T, subject string) {
	t.Helper()
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, e := range c.errs {
			if strings.Contains(e, "Permissions Violation") && strings.Contains(e, subject) {
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond, "a permissions violation for %s", subject)
}

func event(t *testing.T, id, typ, customer string) stripeevent.Event {
	t.Helper()
	raw := fmt.Sprintf(`{"id":%q,"object":"event","type":%q,"created":%d,"livemode":false,"data":{"object":{"id":"sub_1","object":"subscription","customer":%q,"status":"active"}}}`,
		id, typ, time.Now().Unix(), customer)
	ev, err := stripeevent.Parse([]byte(raw))
	require.NoError(t, err)
	return ev
}

// The compose file's NATS config, loaded into a real nats-server: no anonymous client gets in; the
// listener's user publishes events (and ensures the stream) but cannot consume, purge, delete the
// stream, read the events or publish Tollgate's own snapshot subjects; the processor's user does
// all it needs; the query API has no NATS user and no NATS_URL.
func TestComposeNATSPermissions(t *testing.T) {
	t.Parallel()
	srv, urls := composeNATS(t)
	require.ElementsMatch(t, []string{"listener", "processor"}, mapKeys(urls), "only the listener and the processor have NATS_URL")
	require.Contains(t, urls["listener"], "listener:")
	require.Contains(t, urls["processor"], "processor:")
	ctx := t.Context()

	_, err := connect(t, srv.ClientURL())
	require.ErrorContains(t, err, "Authorization Violation", "anonymous")
	_, err = connect(t, strings.Replace(urls["listener"], composePasswords["NATS_LISTENER_PASSWORD"], "guessed", 1))
	require.ErrorContains(t, err, "Authorization Violation", "a wrong password")
	_, err = connect(t, strings.Replace(urls["processor"], "processor:", "queryapi:", 1))
	require.ErrorContains(t, err, "Authorization Violation", "the query API has no user")

	l, err := connect(t, urls["listener"])
	require.NoError(t, err)
	_, err = stream.Ensure(ctx, l.js, stream.Options{})
	require.NoError(t, err, "the listener ensures the stream")
	_, err = stream.Publish(ctx, l.js, event(t, "evt_perm_1", "customer.subscription.created", "cus_perm"))
	require.NoError(t, err, "the listener publishes an event")

	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		t.Cleanup(cancel)
		return c
	}
	_, err = l.js.CreateOrUpdateConsumer(short(), stream.Name, jetstream.ConsumerConfig{Durable: "thief", AckPolicy: jetstream.AckExplicitPolicy})
	require.Error(t, err, "the listener cannot create a consumer")
	l.violated(t, "$JS.API.CONSUMER.CREATE.STRIPE_EVENTS")
	st, err := l.js.Stream(ctx, stream.Name)
	require.NoError(t, err)
	require.Error(t, st.Purge(short()), "the listener cannot purge")
	l.violated(t, "$JS.API.STREAM.PURGE.STRIPE_EVENTS")
	require.Error(t, l.js.DeleteStream(short(), stream.Name), "the listener cannot delete the stream")
	_, err = st.GetMsg(short(), 1)
	require.Error(t, err, "the listener cannot read stored events")
	_, err = l.nc.SubscribeSync("stripe.events.>")
	require.NoError(t, err)
	l.violated(t, "Subscription to \"stripe.events.>\"")
	_, err = stream.Publish(short(), l.js, event(t, stripeevent.SnapshotIDPrefix+"forged", stripeevent.SnapshotType("subscription"), "cus_perm"))
	require.Error(t, err, "the listener cannot publish a snapshot subject")
	l.violated(t, "stripe.events.cus_perm.tollgate.snapshot.subscription")

	p, err := connect(t, urls["processor"])
	require.NoError(t, err)
	_, err = stream.Ensure(ctx, p.js, stream.Options{})
	require.NoError(t, err)
	cons, err := p.js.CreateOrUpdateConsumer(ctx, stream.Name, jetstream.ConsumerConfig{Durable: "tollgate-processor", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err, "the processor creates its consumer")
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	var got []string
	for msg := range batch.Messages() {
		got = append(got, msg.Headers().Get(jetstream.MsgIDHeader))
		require.NoError(t, msg.DoubleAck(ctx), "the processor acknowledges")
	}
	require.NoError(t, batch.Error())
	require.Equal(t, []string{"evt_perm_1"}, got, "the processor reads what the listener published")
	_, err = stream.Publish(ctx, p.js, event(t, stripeevent.SnapshotIDPrefix+"1", stripeevent.SnapshotType("subscription"), "cus_perm"))
	require.NoError(t, err, "the processor publishes repairs")
	floor, err := stream.PurgeApplied(ctx, p.js, cons, 0)
	require.NoError(t, err, "the processor purges applied events")
	require.Equal(t, uint64(1), floor)
	require.NoError(t, p.nc.Publish(stream.EntitlementSubject("test", "u_1"), []byte("{}")))
	require.NoError(t, p.nc.Flush())
	p.mu.Lock()
	require.Empty(t, p.errs, "the processor met no permission violation")
	p.mu.Unlock()

	require.NotContains(t, loadCompose(t).Services["queryapi"].Environment, "NATS_CREDS")
}

func mapKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// The real listener and processor, each with its compose NATS user, against a nats-server run
// with the compose config: a customer's events go through (the users have what the services
// need), the services meet no permission violation, and an anonymous client still cannot put an
// event in the stream (the attack: a raw PUB made a user premium).
func TestComposeNATSThroughTheServices(t *testing.T) {
	t.Parallel()
	binDir, _ := buildBinaries(t)
	srv, urls := composeNATS(t)
	dbName := fmt.Sprintf("tollgate_natsauth_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		if conn, err := pgx.Connect(context.Background(), pgtest.ServerURL()); err == nil {
			_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+dbName+" WITH (FORCE)")
			_ = conn.Close(context.Background())
		}
	})
	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", freePort(t)) }
	logPath := filepath.Join(t.TempDir(), "services.log")
	logf, err := os.Create(logPath)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = logf.Close()
		if t.Failed() {
			t.Logf("last lines of the services' logs:\n%s", tailLines(logPath, 150))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := stack.Start(ctx, stack.Options{
		BinDir: binDir, DataDir: t.TempDir(), NATSURL: urls["listener"], DatabaseURL: pgtest.URLFor(t, dbName),
		ListenerAddr: addr(), QueryAPIAddr: addr(), ProcessorAddr: addr(), Log: logf,
		ProcessorEnv: map[string]string{"NATS_URL": urls["processor"]},
	})
	require.NoError(t, err, "start the stack with the compose NATS users")
	t.Cleanup(func() { _ = st.Stop() })
	require.False(t, st.EmbeddedNATS)

	c := scenario.NewCustomer("natsauth_", 1)
	c.UserID = "u_natsauth"
	for _, s := range c.Lifecycle(time.Now().Add(-time.Hour))[:4] { // up to active
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, st.URL(stack.Listener)+"/webhooks/stripe", bytes.NewReader(s.Event.Payload))
		require.NoError(t, err)
		req.Header.Set("Stripe-Signature", scenario.Sign(s.Event.Payload, st.WebhookSecret))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	premium := func(user string) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.URL(stack.QueryAPI)+"/v1/users/"+user+"/entitlement", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+st.Token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode == http.StatusOK && m["premium"] == true
	}
	wait.For(t, 60*time.Second, "the events are applied through the compose NATS users", func() bool { return premium("u_natsauth") })

	// The attack: a raw PUB of a customer's events over a plain socket, without credentials.
	_, err = nats.Connect(srv.ClientURL())
	require.ErrorContains(t, err, "Authorization Violation")

	logs, err := os.ReadFile(logPath)
	require.NoError(t, err)
	require.NotContains(t, string(logs), "Permissions Violation", "the services have every permission they use")
}
