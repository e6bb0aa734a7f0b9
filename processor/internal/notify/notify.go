// Package notify records entitlement changes in the projection's transaction (the outbox) and
// delivers them: POSTed to NOTIFY_URLS with retries, and published on NATS after commit.
package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/tollgate/tollgate/pkg/backoff"
	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/httpx"
	"github.com/tollgate/tollgate/pkg/outbox"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/processor/internal/service"
)

// publisher publishes a core NATS message (a *nats.Conn).
type publisher interface {
	Publish(subject string, data []byte) error
}

// Options tune the delivery; defaultNotifyOptions are the contract's.
type Options struct {
	Backoff  backoff.Policy
	MaxAge   time.Duration // retried for this long, then given up
	Poll     time.Duration // how often the outbox is looked at without a wake-up
	Lease    time.Duration // how long a claimed delivery is another processor's
	Timeout  time.Duration // of one POST
	Batch    int
	Parallel int
	Keep     time.Duration // delivered and failed rows are pruned after this
}

func DefaultOptions() Options {
	return Options{Backoff: backoff.Policy{Base: time.Second, Max: time.Hour}, MaxAge: 24 * time.Hour,
		Poll: time.Second, Lease: time.Minute, Timeout: 10 * time.Second, Batch: 32, Parallel: 4, Keep: 7 * 24 * time.Hour}
}

type notifyMetrics struct {
	pending, oldest    prometheus.Gauge
	delivered, failed  prometheus.Counter
	attemptsFailed     prometheus.Counter
	published, dropped prometheus.Counter
}

func newNotifyMetrics(reg prometheus.Registerer) *notifyMetrics {
	f := promauto.With(reg)
	return &notifyMetrics{
		pending:        f.NewGauge(prometheus.GaugeOpts{Name: "tollgate_notifications_pending", Help: "Notifications to NOTIFY_URLS not yet delivered nor given up (one per URL)."}),
		oldest:         f.NewGauge(prometheus.GaugeOpts{Name: "tollgate_notifications_oldest_pending_seconds", Help: "Age of the oldest pending notification; 0 when none."}),
		delivered:      f.NewCounter(prometheus.CounterOpts{Name: "tollgate_notifications_delivered_total", Help: "Notifications a URL answered 2xx to."}),
		failed:         f.NewCounter(prometheus.CounterOpts{Name: "tollgate_notifications_failed_total", Help: "Notifications given up on after 24 h of failed attempts."}),
		attemptsFailed: f.NewCounter(prometheus.CounterOpts{Name: "tollgate_notification_attempts_failed_total", Help: "Delivery attempts that got no 2xx (retried)."}),
		published:      f.NewCounter(prometheus.CounterOpts{Name: "tollgate_notifications_nats_published_total", Help: "Entitlement changes published on NATS."}),
		dropped:        f.NewCounter(prometheus.CounterOpts{Name: "tollgate_notifications_nats_dropped_total", Help: "Entitlement changes NATS did not take (best effort)."}),
	}
}

// Notifier records entitlement changes in the projector's transaction and delivers them: POSTed
// to each URL from the outbox with retries, and published on NATS (best effort) after commit.
// A nil *notifier does nothing.
type Notifier struct {
	db      beginner
	q       entitlement.Querier
	urls    []string
	key     []byte
	nc      publisher // nil: no NATS publishing
	client  *http.Client
	opts    Options
	logger  *slog.Logger
	metrics *notifyMetrics
	wake    chan struct{}
}

// beginner starts transactions (a *pgxpool.Pool).
type beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

type notifierPool interface {
	beginner
	entitlement.Querier
}

func New(pool notifierPool, urls []string, key []byte, nc publisher, opts Options, logger *slog.Logger, reg prometheus.Registerer) *Notifier {
	return &Notifier{db: pool, q: pool, urls: urls, key: key, nc: nc, client: &http.Client{Timeout: opts.Timeout, CheckRedirect: noRedirects},
		opts: opts, logger: logger, metrics: newNotifyMetrics(reg), wake: make(chan struct{}, 1)}
}

// Record is the projector's hook: inside its transaction, after the user rows (each in its
// scope) were rebuilt; rows are the rows written (a user absent has none).
func (n *Notifier) Record(ctx context.Context, tx pgx.Tx, users []scope.Key, rows map[scope.Key]entitlement.User) ([]outbox.Change, error) {
	if n == nil || len(users) == 0 {
		return nil, nil
	}
	return outbox.Record(ctx, tx, users, rows, n.urls, time.Now())
}

// Committed is the projector's hook once the transaction committed: publish on NATS, wake the
// delivery.
func (n *Notifier) Committed(changes []outbox.Change) {
	if n == nil || len(changes) == 0 {
		return
	}
	if n.nc != nil {
		for _, c := range changes {
			if err := n.nc.Publish(stream.EntitlementSubject(outbox.Token(c.Scope), *c.Body.Data.UserID), c.Raw); err != nil {
				n.metrics.dropped.Inc()
				n.logger.Warn("publish entitlement change on NATS failed (best effort)", "user", *c.Body.Data.UserID, "error", err)
				continue
			}
			n.metrics.published.Inc()
		}
	}
	if len(n.urls) > 0 {
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
}

// Run delivers the outbox until ctx is done. Several processors may run it: each claims rows
// under a lease (outbox.Claim).
func (n *Notifier) Run(ctx context.Context) {
	var lastStats, lastPrune time.Time
	service.Loop{Interval: n.opts.Poll, Wake: n.wake}.Run(ctx, func(ctx context.Context) service.Next {
		claimed := n.deliverDue(ctx)
		if time.Since(lastStats) >= 5*time.Second || claimed == 0 {
			if s, err := outbox.Count(ctx, n.q); err == nil {
				n.metrics.pending.Set(float64(s.Pending))
				n.metrics.oldest.Set(s.OldestPending.Seconds())
				lastStats = time.Now()
			}
		}
		if time.Since(lastPrune) >= time.Hour {
			if err := outbox.Prune(ctx, n.q, n.opts.Keep); err != nil && ctx.Err() == nil {
				n.logger.Warn("prune notifications", "error", err)
			}
			lastPrune = time.Now()
		}
		if claimed == n.opts.Batch {
			return service.Again // more may be due
		}
		return service.Wait
	})
}

// deliverDue claims one batch and attempts each delivery; it returns how many it claimed.
func (n *Notifier) deliverDue(ctx context.Context) int {
	due, err := outbox.Claim(ctx, n.q, n.opts.Batch, n.opts.Lease)
	if err != nil {
		if ctx.Err() == nil {
			n.logger.Warn("claim notifications", "error", err)
		}
		return 0
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(n.opts.Parallel, 1))
	for _, d := range due {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			n.attempt(ctx, d)
		})
	}
	wg.Wait()
	return len(due)
}

// attempt POSTs one delivery and records the outcome. Its context outlives a shutdown briefly,
// so an answered POST is recorded as delivered (else it is sent again after the lease: at least
// once).
func (n *Notifier) attempt(ctx context.Context, d outbox.Delivery) {
	cause := n.post(ctx, d)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if cause == "" {
		if err := outbox.Delivered(rctx, n.q, d); err != nil {
			n.logger.Warn("record delivered notification", "id", d.ID, "error", err)
			return
		}
		n.metrics.delivered.Inc()
		return
	}
	giveUp := time.Since(d.CreatedAt) >= n.opts.MaxAge
	wait := n.opts.Backoff.Delay(d.Attempts + 1)
	if err := outbox.Retry(rctx, n.q, d, cause, wait, giveUp); err != nil {
		n.logger.Warn("record failed notification", "id", d.ID, "error", err)
		return
	}
	n.metrics.attemptsFailed.Inc()
	if giveUp {
		n.metrics.failed.Inc()
		n.logger.Error("notification given up after retrying for its maximum age", "id", d.ID, "url", httpx.RedactURL(d.URL), "attempts", d.Attempts+1, "cause", cause)
		return
	}
	n.logger.Info("notification not delivered; retrying", "id", d.ID, "url", httpx.RedactURL(d.URL), "attempt", d.Attempts+1, "retry_in", wait.String(), "cause", cause)
}

// post sends a delivery signed the Standard Webhooks way; "" when the URL answered 2xx, else why not.
func (n *Notifier) post(ctx context.Context, d outbox.Delivery) string {
	ts := time.Now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.Body))
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tollgate-processor")
	req.Header.Set("webhook-id", d.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", outbox.Sign(n.key, d.ID, ts, d.Body))
	resp, err := n.client.Do(req)
	if uerr := (*url.Error)(nil); errors.As(err, &uerr) {
		err = uerr.Err // its text names the URL, userinfo and all: the cause is logged and stored
	}
	if err != nil {
		return err.Error()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 && loc != "" {
			return fmt.Sprintf("HTTP %d (a redirect, not followed, to %s)", resp.StatusCode, httpx.RedactURL(loc))
		}
		return fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	return ""
}

// noRedirects makes the client return a 3xx as it is: a notification is never re-POSTed (its
// signed body) to wherever a redirect points, nor turned into a GET whose 200 would mark it
// delivered; a 3xx is a failed attempt, retried like a 500.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
