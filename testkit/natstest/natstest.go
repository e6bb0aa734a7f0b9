// Package natstest runs an embedded NATS server with JetStream for tests: a random port, a
// store in a temp directory, fsync on every write. Test code only.
package natstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is an embedded JetStream server that can be stopped and started again on the same port
// and store, as a crashed and restarted nats-server would be.
type Server struct {
	opts *server.Options
	srv  *server.Server
}

// Start runs a server for the test and shuts it down in t.Cleanup.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return StartWithOptions(tb, func(*server.Options) {})
}

// StartWithOptions is Start with a hook to change the server's options (max_payload, ...).
func StartWithOptions(tb testing.TB, configure func(*server.Options)) *Server {
	tb.Helper()
	opts := &server.Options{
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   tb.TempDir(),
		SyncAlways: true,
		NoLog:      true,
		NoSigs:     true,
	}
	configure(opts)
	s := &Server{opts: opts}
	s.start(tb)
	// The first start picked a port; keep it so a restart is the same address.
	addr, ok := s.srv.Addr().(*net.TCPAddr)
	if !ok {
		tb.Fatalf("natstest: server address %v is not TCP", s.srv.Addr())
	}
	s.opts.Port = addr.Port
	tb.Cleanup(s.Shutdown)
	return s
}

func (s *Server) start(tb testing.TB) {
	tb.Helper()
	// A copy: the server keeps reading its options, and StartWithOptions and StartCluster pin
	// ports and routes in s.opts for the next start.
	srv, err := server.NewServer(s.opts.Clone())
	if err != nil {
		tb.Fatalf("natstest: new server: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		tb.Fatalf("natstest: server not ready in 10s")
	}
	s.srv = srv
}

// Name is the server's name (ServerName; "" unless set, as StartCluster does).
func (s *Server) Name() string { return s.opts.ServerName }

// URL is the client URL of the server.
func (s *Server) URL() string { return s.srv.ClientURL() }

// Shutdown stops the server. It is safe to call more than once.
func (s *Server) Shutdown() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
	}
}

// Restart starts the server again on the same port with the same store.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Shutdown()
	s.start(tb)
}

// Connect opens a client connection that is closed in t.Cleanup.
func (s *Server) Connect(tb testing.TB) *nats.Conn {
	tb.Helper()
	return connect(tb, s.URL())
}

// JetStream opens a connection and returns its JetStream context.
func (s *Server) JetStream(tb testing.TB) jetstream.JetStream {
	tb.Helper()
	return newJetStream(tb, s.Connect(tb))
}

func connect(tb testing.TB, url string, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		tb.Fatalf("natstest: connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

func newJetStream(tb testing.TB, nc *nats.Conn) jetstream.JetStream {
	tb.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("natstest: jetstream: %v", err)
	}
	return js
}
