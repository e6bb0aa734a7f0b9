package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// Channels the read model's triggers notify on (migrations/000003).
const (
	entitlementsChannel = "tollgate_entitlements"
	switchesChannel     = "tollgate_switches"
)

// notifyListener holds one LISTEN session and turns its notifications into cache invalidations
// and fail-open refreshes. It reconnects with backoff for as long as its context lives.
type notifyListener struct {
	connect func(ctx context.Context) (*pgx.Conn, error)
	cache   *cache
	// warm, when set, is called once each session is established and the cache serves.
	warm         func(ctx context.Context)
	sw           interface{ poke() }
	logger       *slog.Logger
	reconnectMax time.Duration
}

// run listens until ctx is done.
func (l *notifyListener) run(ctx context.Context) {
	const firstBackoff = 100 * time.Millisecond
	backoff := firstBackoff
	for {
		established, err := l.session(ctx)
		l.cache.setListening(false)
		if ctx.Err() != nil {
			return
		}
		msg := "cannot LISTEN for read model changes; answers come from Postgres until it can"
		if established {
			backoff = firstBackoff
			msg = "LISTEN session lost; answers come from Postgres until it is back"
		}
		l.logger.Warn(msg, "err", err, "retry_in", backoff.String())
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, l.reconnectMax)
	}
}

// session connects, listens, enables the cache and applies notifications until the connection
// fails or ctx is done. established reports whether LISTEN took effect.
func (l *notifyListener) session(ctx context.Context) (established bool, err error) {
	conn, err := l.connect(ctx)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx) // the session is over either way
	}()
	for _, ch := range []string{entitlementsChannel, switchesChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			return false, fmt.Errorf("listen %s: %w", ch, err)
		}
	}
	// Changes committed from here on are notified; setListening drops what came before.
	l.cache.setListening(true)
	l.sw.poke()
	if l.warm != nil {
		l.warm(ctx)
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, fmt.Errorf("wait for notification: %w", err)
		}
		if n.Channel == switchesChannel {
			l.sw.poke()
			continue
		}
		if k, ok := parseKey(n.Payload); ok {
			l.cache.invalidate(k)
			continue
		}
		// "*" (TRUNCATE), or a payload of a newer schema: dropping everything is always safe.
		l.cache.flush()
	}
}
