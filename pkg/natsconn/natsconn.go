// Package natsconn is how Tollgate's services connect to NATS: for good, and drained on the way
// out.
package natsconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// ErrLost is the error of Lost: the connection closed without this process closing it (the
// server closed it on a protocol error, or nats.go gave up), so nothing can be published or
// fetched any more.
var ErrLost = errors.New("nats: connection closed for good")

// Conn is a NATS connection that knows when it has closed.
type Conn struct {
	*nats.Conn
	closed  chan struct{}
	lost    chan struct{}
	closing atomic.Bool // DrainWait or Close called: the close is ours
}

// Connect connects for good: it retries the first connection and every reconnection forever.
// While disconnected, publishes and requests fail at once instead of being buffered
// (ReconnectBufSize -1): a webhook gets a fast 503 rather than waiting out its publish timeout,
// and a pull request is never replayed to a fetch that gave up long ago. name identifies the
// client to the server; whileDown ends the warning logged on a disconnection. extra are more
// options, such as Creds's; a user and password may also be in url.
func Connect(url, name, whileDown string, logger *slog.Logger, extra ...nats.Option) (*Conn, error) {
	c := &Conn{closed: make(chan struct{}), lost: make(chan struct{})}
	opts := append([]nats.Option{
		nats.Name(name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
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
		// nats.go's default prints plain lines to stderr: every log line is JSON.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			attrs := []any{"error", err}
			if sub != nil {
				attrs = append(attrs, "subject", sub.Subject)
			}
			logger.Warn("nats async error", attrs...)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if !c.closing.Load() {
				logger.Error("nats connection closed for good", "error", nc.LastError())
				close(c.lost)
			}
			close(c.closed)
		}),
	}, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, &redactedError{msg: fmt.Sprintf("NATS_URL %s: %s", Redact(url), userinfo.ReplaceAllString(err.Error(), "://$1:xxxxx@")), err: err}
	}
	c.Conn = nc
	return c, nil
}

// Creds is the option that authenticates with the credentials file at path (NATS_CREDS: a user
// JWT and its nkey seed, for servers run with decentralised auth); none when path is "". The
// file is read at every (re)connect, so a rotated file is picked up without a restart.
func Creds(path string) []nats.Option {
	if path == "" {
		return nil
	}
	return []nats.Option{nats.UserCredentials(path)}
}

// Lost is closed when the connection closed without Close or DrainWait of this Conn: the
// process cannot publish or fetch any more and should exit non-zero (see serve) so that its
// supervisor starts it afresh.
func (c *Conn) Lost() <-chan struct{} { return c.lost }

// Close closes the connection; Lost does not fire.
func (c *Conn) Close() {
	c.closing.Store(true)
	c.Conn.Close()
}

// userinfo matches the user:password@ of a URL inside any text, parseable or not.
var userinfo = regexp.MustCompile(`://([^:/@\s]*):([^@\s]*)@`)

// redactedError is an error whose text has no password; it still unwraps to the original.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// Redact replaces the password of every URL in a comma-separated NATS_URL (or any URL) with
// "xxxxx", and a bare token user (nats://token@host) too, for logs and errors.
func Redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			parts[i] = "(unparseable URL)"
			continue
		}
		if u.User == nil && !strings.Contains(p, "://") {
			parts[i] = strings.TrimSpace(p) // host:port
			continue
		}
		if u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			} else {
				u.User = url.User("xxxxx") // a token
			}
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

// Closed is closed once the connection has closed for good.
func (c *Conn) Closed() <-chan struct{} { return c.closed }

// DrainWait drains the connection (pending publishes are flushed, subscriptions finish) and
// waits until it has closed, at most timeout, after which it closes it.
func (c *Conn) DrainWait(timeout time.Duration) error {
	c.closing.Store(true)
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

// StopOnLost calls stop(ErrLost) once c's connection closed for good, or returns when ctx is
// done. nats.go reconnects by itself after a network failure, but a connection the server closed
// on a protocol error stays closed; a process living on with it would fail every publish or
// fetch while /healthz says ok. Stopping with ErrLost makes the process exit non-zero, and its
// supervisor restarts it with every NATS object built afresh: simpler and surer than re-creating
// the connection, JetStream context and consumers in place. Run it in a goroutine.
func StopOnLost(ctx context.Context, c *Conn, stop context.CancelCauseFunc) {
	select {
	case <-c.Lost():
		stop(ErrLost)
	case <-ctx.Done():
	}
}

// LostCause is ErrLost when that is why ctx ended (StopOnLost), else nil.
func LostCause(ctx context.Context) error {
	if cause := context.Cause(ctx); errors.Is(cause, ErrLost) {
		return cause
	}
	return nil
}
