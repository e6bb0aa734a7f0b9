package natstest

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/testkit/freeport"
	"github.com/tollgate/tollgate/testkit/wait"
)

// ClusterName is the NATS cluster name of StartCluster's servers.
const ClusterName = "natstest"

// readyWithin bounds the wait for a meta leader that sees every node.
const readyWithin = 30 * time.Second

// Cluster is an embedded JetStream cluster in the test's process: servers named n1..nN on
// loopback, each with its own client and route port and store, routed to every other one. A
// node can be shut down and restarted on the same ports and store (Server.Shutdown, Restart).
type Cluster struct {
	// Nodes are the servers, n1 first.
	Nodes []*Server
}

// StartCluster starts an n-node JetStream cluster and returns once a meta leader was elected
// that sees every node, and every node is current with it (30 s at most). t.Cleanup stops the
// servers. n is at least 2; a stream of R replicas needs n >= R.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	if n < 2 {
		tb.Fatalf("natstest: a cluster of %d nodes (a meta leader needs two; Start runs one server)", n)
	}
	// nats-server starts clustered JetStream only with configured routes, so the route ports
	// are chosen before any node starts; each node's own route in the list is ignored.
	ports := make([]int, n)
	routes := make([]*url.URL, n)
	for i := range routes {
		var err error
		if ports[i], err = freeport.Get(); err != nil {
			tb.Fatalf("natstest: route port: %v", err)
		}
		routes[i] = &url.URL{Scheme: "nats-route", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i]))}
	}
	c := &Cluster{}
	for i := range n {
		c.Nodes = append(c.Nodes, StartWithOptions(tb, func(o *server.Options) {
			o.ServerName = fmt.Sprintf("n%d", i+1)
			o.Cluster = server.ClusterOpts{Name: ClusterName, Host: "127.0.0.1", Port: ports[i]}
			o.Routes = routes
		}))
	}
	c.WaitReady(tb)
	return c
}

// WaitReady waits until every node runs and is current with a meta leader that sees every node
// (as after a restart). It fails the test after 30 s.
func (c *Cluster) WaitReady(tb testing.TB) {
	tb.Helper()
	wait.For(tb, readyWithin, fmt.Sprintf("natstest: JetStream meta leader seeing all %d nodes", len(c.Nodes)), func() bool {
		leader := false
		for _, s := range c.Nodes {
			if !s.srv.Running() || !s.srv.JetStreamIsCurrent() {
				return false
			}
			leader = leader || s.srv.JetStreamIsLeader() && len(s.srv.JetStreamClusterPeers()) == len(c.Nodes)
		}
		return leader
	})
}

// Restart starts node s again (after s.Shutdown, or killing it now) on its ports and store and
// waits until the cluster is ready again.
func (c *Cluster) Restart(tb testing.TB, s *Server) {
	tb.Helper()
	s.Restart(tb)
	c.WaitReady(tb)
}

// Node is the node named name (a StreamInfo's Cluster.Leader, say). It fails the test when no
// node has that name.
func (c *Cluster) Node(tb testing.TB, name string) *Server {
	tb.Helper()
	for _, s := range c.Nodes {
		if s.Name() == name {
			return s
		}
	}
	tb.Fatalf("natstest: no node named %q in the cluster", name)
	return nil
}

// URL lists the client URLs of every node, comma-separated, as NATS_URL does.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		urls[i] = "nats://" + net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port))
	}
	return strings.Join(urls, ",")
}

// Connect opens a client connection to the cluster that reconnects to any node for as long as
// the test runs, and is closed in t.Cleanup.
func (c *Cluster) Connect(tb testing.TB) *nats.Conn {
	tb.Helper()
	return connect(tb, c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
}

// JetStream opens a connection to the cluster and returns its JetStream context.
func (c *Cluster) JetStream(tb testing.TB) jetstream.JetStream {
	tb.Helper()
	return newJetStream(tb, c.Connect(tb))
}
