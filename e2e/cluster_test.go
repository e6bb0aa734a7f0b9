package e2e_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/testkit/wait"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/natsproc"
	"github.com/tollgate/tollgate/e2e/pgcluster"
	"github.com/tollgate/tollgate/e2e/stack"
	"github.com/tollgate/tollgate/pkg/stream"
)

// clusterCustomers is the number of customers of the cluster test's traffic: about 420 events,
// 600 copies, sent for about 12 seconds at crashSendEvery, so that three faults fall into it.
const clusterCustomers = 60

// TestCluster runs the README's "Scaling out" for real: three nats-server processes as one
// JetStream cluster on loopback, the stream created with STREAM_REPLICAS=3, and two of every
// service (two listeners, two processors sharing the durable consumer, two query APIs). Shuffled,
// duplicated traffic goes to both listeners, each request to one picked at random, retried like
// Stripe retries. Meanwhile it kills the stream's leader (kill -9) and measures the failover
// (from the kill until a webhook sent after it is acknowledged, and the 503s meanwhile), starts
// it again on its store, then kills a processor and a listener (kill -9) and starts them again.
// Once drained, the crash tests' invariants hold (checkInvariants), and both query APIs answer
// the derivation of the full history.
func TestCluster(t *testing.T) {
	binDir, natsBin := buildBinaries(t)
	seed := crashSeed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	e := &crashEnv{http: &http.Client{Timeout: 10 * time.Second}}
	e.pg = pgcluster.Start(t)
	nodes := natsproc.StartCluster(t, natsBin, 3)
	natsURL := natsproc.ClusterURL(nodes)
	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", freePort(t)) }
	var err error
	e.st, err = stack.Start(ctx, stack.Options{
		BinDir: binDir, DataDir: t.TempDir(), NATSURL: natsURL, DatabaseURL: e.pg.URL("tollgate"),
		ListenerAddr: addr(), QueryAPIAddr: addr(), ProcessorAddr: addr(), Log: servicesLog(t),
		Env: map[string]string{"STREAM_REPLICAS": "3"},
	})
	require.NoError(t, err, "start the stack")
	t.Cleanup(func() { _ = e.st.Stop() })
	var second [3]*stack.Process
	for i, svc := range []string{stack.Processor, stack.Listener, stack.QueryAPI} {
		second[i], err = e.st.AddInstance(ctx, svc, svc+"-2", addr())
		require.NoError(t, err, "second %s", svc)
	}
	e.queryAPIs = []string{e.st.URL(stack.QueryAPI), second[2].URL()}

	e.db, err = pgxpool.New(ctx, e.pg.URL("tollgate"))
	require.NoError(t, err)
	t.Cleanup(e.db.Close)
	nc, err := nats.Connect(natsURL, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	e.js, err = jetstream.New(nc)
	require.NoError(t, err)

	require.Equal(t, 3, streamInfo(ctx, t, e.js).Config.Replicas, "the listener and processor created the stream with STREAM_REPLICAS")
	wait.For(t, 30*time.Second, "a stream leader and two current followers", func() bool { return replicasCurrent(ctx, e.js) })

	e.plan = newCrashPlan(rand.New(rand.NewPCG(seed, seed>>1)), "cc", clusterCustomers)
	e.traffic = newTraffic([]string{
		e.st.URL(stack.Listener) + "/webhooks/stripe", second[1].URL() + "/webhooks/stripe",
	}, e.st.WebhookSecret, e.plan, crashSendEvery)
	tr := e.traffic
	started := time.Now()
	tr.start(t)
	wait.For(t, 60*time.Second, "a quarter of the events accepted before the leader is killed", func() bool {
		return tr.acceptedEvents() >= len(e.plan.events)/4
	})

	// The stream's leader dies: a follower takes over once the two left elect it.
	leader := nodeNamed(t, nodes, streamInfo(ctx, t, e.js).Cluster.Leader)
	leader.Kill()
	killed := time.Now()
	wait.For(t, 60*time.Second, "a webhook sent after the leader's kill accepted", func() bool {
		return tr.count(func(a attempt) bool { return a.start.After(killed) && a.status == http.StatusOK }) > 0
	})
	recovered := firstOK(tr, killed)
	during := func(a attempt) bool { return a.end.After(killed) && a.start.Before(recovered) }
	refused := map[string]bool{} // events answered 503 at least once during the failover
	for _, a := range tr.snapshot() {
		if during(a) && a.status == http.StatusServiceUnavailable {
			refused[a.id] = true
		}
	}
	t.Logf("stream leader %s killed: failover took %s (kill to the first 200 of a webhook sent after it); "+
		"%d answers 503 (to %d distinct events, each retried) and %d without answer meanwhile; new leader %s",
		leader.Name, recovered.Sub(killed).Round(time.Millisecond),
		tr.count(func(a attempt) bool { return during(a) && a.status == http.StatusServiceUnavailable }), len(refused),
		tr.count(func(a attempt) bool { return during(a) && a.status == 0 }), streamInfo(ctx, t, e.js).Cluster.Leader)
	require.NoError(t, leader.Restart(ctx), "the old leader starts again on its store")
	wait.For(t, 60*time.Second, "the old leader a current replica again", func() bool { return replicasCurrent(ctx, e.js) })
	t.Logf("%s rejoined as a current replica %s after its kill", leader.Name, time.Since(killed).Round(time.Millisecond))

	// A processor dies mid-traffic: the other keeps consuming; the dead one's unacknowledged
	// messages come back after the ack wait.
	wait.For(t, 60*time.Second, "half of the copies sent", func() bool { return tr.sent.Load() >= int64(len(e.plan.sends)/2) })
	killAndRestart(ctx, t, e.st, "processor-2")
	// A listener dies with requests in flight: Stripe's retries reach the other or this one again.
	wait.For(t, 60*time.Second, "three quarters of the copies sent", func() bool {
		return tr.sent.Load() >= int64(len(e.plan.sends)*3/4)
	})
	killAndRestart(ctx, t, e.st, stack.Listener)

	tr.wait(t, sendDeadline+30*time.Second)
	t.Logf("traffic done after %s: %s", time.Since(started).Round(time.Millisecond), tr.summary())
	drained := time.Now()
	e.waitDrained(t, 120*time.Second)
	t.Logf("drained %s after the traffic ended", time.Since(drained).Round(time.Millisecond))
	e.checkInvariants(t)
	require.NoError(t, e.st.Stop(), "every service stops cleanly on SIGTERM after the crashes")
}

// killAndRestart kills the named process with SIGKILL, starts it again and waits until it is ready.
func killAndRestart(ctx context.Context, t *testing.T, st *stack.Stack, name string) {
	t.Helper()
	p := st.Process(name)
	require.NotNil(t, p, name)
	killed := time.Now()
	p.Kill()
	p, err := p.Restart(ctx)
	require.NoError(t, err)
	require.NoError(t, p.WaitReady(ctx, 60*time.Second))
	t.Logf("%s killed and ready again in %s", name, time.Since(killed).Round(time.Millisecond))
}

// streamInfo is the stream's info, failing the test when JetStream does not answer.
func streamInfo(ctx context.Context, t *testing.T, js jetstream.JetStream) *jetstream.StreamInfo {
	t.Helper()
	info, err := streamInfoErr(ctx, js)
	require.NoError(t, err)
	return info
}

func streamInfoErr(ctx context.Context, js jetstream.JetStream) (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream.Name)
	if err != nil {
		return nil, err
	}
	return s.Info(ctx)
}

// replicasCurrent says whether the stream has a leader and two followers, both online and current.
func replicasCurrent(ctx context.Context, js jetstream.JetStream) bool {
	info, err := streamInfoErr(ctx, js)
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
		return false
	}
	for _, r := range info.Cluster.Replicas {
		if !r.Current || r.Offline {
			return false
		}
	}
	return true
}

// nodeNamed is the cluster node whose server_name is name.
func nodeNamed(t *testing.T, nodes []*natsproc.Server, name string) *natsproc.Server {
	t.Helper()
	for _, n := range nodes {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("no cluster node is called %q", name)
	return nil
}
