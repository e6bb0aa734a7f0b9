package natstest

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// Proxy forwards NATS client connections to a server and can make the server look as if it
// closed them on a protocol error: Refuse writes "-ERR 'Maximum Control Line Exceeded'" to every
// client and closes it, which nats.go answers by closing the connection for good (no reconnect).
// It is what a 5,000-byte subject used to do to the listener.
type Proxy struct {
	target string
	ln     net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// NewProxy listens on a loopback port and forwards to s. It stops in tb's cleanup.
func NewProxy(tb testing.TB, s *Server) *Proxy {
	tb.Helper()
	ln, err := (&net.ListenConfig{}).Listen(tb.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("natstest: proxy listen: %v", err)
	}
	p := &Proxy{target: strings.TrimPrefix(s.URL(), "nats://"), ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	tb.Cleanup(func() {
		_ = p.ln.Close()
		p.Refuse()
		p.wg.Wait()
	})
	return p
}

// URL is the proxy's nats:// address.
func (p *Proxy) URL() string { return "nats://" + p.ln.Addr().String() }

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.forward(c) })
	}
}

func (p *Proxy) forward(client net.Conn) {
	server, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", p.target)
	if err != nil {
		_ = client.Close()
		return
	}
	p.mu.Lock()
	p.conns[client] = struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = io.Copy(server, client); _ = server.Close() })
	_, _ = io.Copy(client, server)
	_ = client.Close()
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, client)
	p.mu.Unlock()
}

// Refuse sends every open client the server's fatal protocol error and closes it.
func (p *Proxy) Refuse() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_, _ = io.WriteString(c, "-ERR 'Maximum Control Line Exceeded'\r\n")
		_ = c.Close()
	}
}
