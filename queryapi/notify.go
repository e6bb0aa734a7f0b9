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
	flags        interface{ poke() } // the flag catalogue
	waits        *waiters            // read your writes: woken after the cache dropped the key
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
		l.waits.wakeAll() // nothing will wake them now: they check again and poll
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
	for _, ch := range []string{entitlementsChannel, switchesChannel, catalogueChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			return false, fmt.Errorf("listen %s: %w", ch, err)
		}
	}
	// Changes committed from here on are notified; setListening drops what came before.
	l.cache.setListening(true)
	l.sw.poke()
	l.flags.poke() // what changed while no session listened
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
		if n.Channel == catalogueChannel {
			l.flags.poke()
			continue
		}
		if k, ok := parseKey(n.Payload); ok {
			l.cache.invalidate(k)
			l.waits.wake(k)
			continue
		}
		// Any session may pg_notify any channel with any payload; Postgres has no channel
		// privilege. Keys only cost a read, but a flush drops every instance's cache at once, so
		// "*" is honoured only from a session that may TRUNCATE the read model (what the trigger
		// sends on TRUNCATE), and anything else unknown is ignored. A flush missed because the
		// truncating session already left is bounded by cacheMaxAge, like a lost notification.
		if n.Payload == "*" && mayTruncate(ctx, conn, n.PID) {
			l.cache.flush()
			l.waits.wakeAll()
			continue
		}
		l.logger.Debug("ignored a notification the read model's triggers do not send", "payload_bytes", len(n.Payload), "pid", n.PID)
	}
}

// mayTruncate reports whether the backend pid is still connected as a role that may TRUNCATE a
// read-model table. pg_stat_activity shows every session's role to every role.
func mayTruncate(ctx context.Context, conn *pgx.Conn, pid uint32) bool {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var ok bool
	err := conn.QueryRow(qctx, `SELECT coalesce(bool_or(has_table_privilege(usesysid, 'customer_entitlements', 'TRUNCATE')
			OR has_table_privilege(usesysid, 'user_entitlements', 'TRUNCATE')), false)
		FROM pg_stat_activity WHERE pid = $1`, int64(pid)).Scan(&ok)
	return err == nil && ok
}
