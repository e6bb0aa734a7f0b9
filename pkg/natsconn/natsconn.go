// Package natsconn is how Tollgate's services connect to NATS: for good, and drained on the way
// out.
package natsconn

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// Conn is a NATS connection that knows when it has closed.
type Conn struct {
	*nats.Conn
	closed chan struct{}
}

// Connect connects for good: it retries the first connection and every reconnection forever.
// While disconnected, publishes and requests fail at once instead of being buffered
// (ReconnectBufSize -1): a webhook gets a fast 503 rather than waiting out its publish timeout,
// and a pull request is never replayed to a fetch that gave up long ago. name identifies the
// client to the server; whileDown ends the warning logged on a disconnection.
func Connect(url, name, whileDown string, logger *slog.Logger) (*Conn, error) {
	c := &Conn{closed: make(chan struct{})}
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectBufSize(-1),
		nats.ConnectHandler(func(nc *nats.Conn) {
			logger.Info("nats connected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: our own Close or Drain
				logger.Warn("nats disconnected; "+whileDown, "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(c.closed) }),
	)
	if err != nil {
		return nil, fmt.Errorf("NATS_URL %s: %w", url, err)
	}
	c.Conn = nc
	return c, nil
}

// Closed is closed once the connection has closed for good.
func (c *Conn) Closed() <-chan struct{} { return c.closed }

// DrainWait drains the connection (pending publishes are flushed, subscriptions finish) and
// waits until it has closed, at most timeout, after which it closes it.
func (c *Conn) DrainWait(timeout time.Duration) error {
	if err := c.Drain(); err != nil {
		c.Close() // not connected: nothing is in flight
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.closed:
		return nil
	case <-t.C:
		c.Close()
		return fmt.Errorf("nats drain did not finish in %s", timeout)
	}
}
