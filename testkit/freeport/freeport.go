// Package freeport hands out loopback ports for the services the end-to-end tests start as
// processes of their own, and for the route ports of natstest's clusters (each node must be
// configured with the others' before any starts). Test code only. A port the kernel picks for ":0" comes from the ephemeral range,
// where, once closed, it can be taken as the source port of any outgoing connection (to
// Postgres, to NATS) before the service binds it; under load that made a service fail to
// start now and then. These ports come from below that range (20000-32767), are checked to
// be free, and are never handed out twice by one process.
package freeport

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
)

const (
	low  = 20000
	high = 32767 // net.ipv4.ip_local_port_range starts at 32768 by default
)

var (
	mu    sync.Mutex           //nolint:gochecknoglobals // one registry per process
	given = map[int]struct{}{} //nolint:gochecknoglobals // one registry per process
)

// Get returns a loopback port nothing listens on, not handed out before in this process.
func Get() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	for range 1000 {
		p := low + rand.IntN(high-low+1)
		if _, ok := given[p]; ok {
			continue
		}
		l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // in use
		}
		_ = l.Close()
		given[p] = struct{}{}
		return p, nil
	}
	return 0, fmt.Errorf("freeport: no free port in %d-%d after 1000 tries", low, high)
}

// Addr is Get as a host:port address.
func Addr() (string, error) {
	p, err := Get()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}
