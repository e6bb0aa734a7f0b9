package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/httpx"
	"github.com/tollgate/tollgate/pkg/natsconn"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/testkit/natstest"
	"github.com/tollgate/tollgate/testkit/stripetest"
)

// BenchmarkWebhook measures accepted webhooks per second and their latency over real HTTP on
// loopback, at 1 and 32 concurrent senders, for:
//   - listener: the real handler, publishing to an embedded JetStream with file storage and
//     fsync on every write (natstest), answering after the PubAck;
//   - baseline: a handler that only reads the body, verifies the signature and answers 200;
//   - listener-nosync: the real handler against JetStream with nats-server's default sync (every
//     2 minutes), only to separate the cost of the fsync per message from the listener's own.
//     Production runs with sync_interval: always (docker-compose.yml), as "listener" measures.
//
// Each request carries a distinct event (a real 6 KB captured subscription event under a new
// id), signed before the timer starts. Client, server and nats-server share the machine.
//
//	go test -run='^$' -bench=. ./listener/...
func BenchmarkWebhook(b *testing.B) {
	for _, handler := range []string{"baseline", "listener", "listener-nosync"} {
		for _, concurrency := range []int{1, 32} {
			b.Run(fmt.Sprintf("handler=%s/concurrency=%d", handler, concurrency), func(b *testing.B) {
				benchWebhook(b, handler, concurrency)
			})
		}
	}
}

// benchRuns keeps event ids distinct across the runs of one process (b.N grows run by run).
var benchRuns atomic.Int64 //nolint:gochecknoglobals // test-only counter

func benchWebhook(b *testing.B, handler string, concurrency int) {
	cfg, err := config.LoadListener(func(k string) string {
		if k == "STRIPE_WEBHOOK_SECRETS" {
			return testSecret
		}
		return ""
	})
	if err != nil {
		b.Fatal(err)
	}
	var h http.Handler
	switch handler {
	case "baseline":
		h = baselineHandler(cfg)
	case "listener", "listener-nosync":
		ns := natstest.StartWithOptions(b, func(o *natsserver.Options) { o.SyncAlways = handler == "listener" })
		logger := slog.New(slog.DiscardHandler)
		conn, err := natsconn.Connect(ns.URL(), "tollgate-listener", "test", logger)
		if err != nil {
			b.Fatal(err)
		}
		nc, closed := conn.Conn, conn.Closed()
		b.Cleanup(func() { nc.Close(); <-closed })
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		if err := ensureStream(b.Context(), js, stream.Options{}, logger, 10*time.Second); err != nil {
			b.Fatal(err)
		}
		h = newServer(cfg, nc, js, logger, prometheus.NewRegistry())
	}
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	url := srv.URL + "/webhooks/stripe"

	bodies, headers := presign(b, b.N)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
	b.Cleanup(client.CloseIdleConnections)
	latencies := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				t0 := time.Now()
				err := deliver(client, url, bodies[i], headers[i])
				latencies[i] = time.Since(t0)
				if err != nil {
					failed.Add(1)
					firstErr.Do(func() { b.Error(err) })
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d deliveries failed", n, b.N)
	}

	slices.Sort(latencies)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(ms(percentile(latencies, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(latencies, 0.99)), "p99-ms")
}

// presign makes n distinct signed events from a real captured event.
func presign(b *testing.B, n int) (bodies [][]byte, headers []string) {
	b.Helper()
	raw := stripetest.Fixture(b, "customer.subscription.created.json")
	// Split once around the event id: WithID per event would dominate the setup.
	marker := []byte(`"evt_bench_marker"`)
	tmpl := stripetest.WithID(b, raw, "evt_bench_marker")
	at := bytes.Index(tmpl, marker)
	prefix, suffix := tmpl[:at], tmpl[at+len(marker):]
	run := benchRuns.Add(1)
	bodies, headers = make([][]byte, n), make([]string, n)
	for i := range n {
		body := make([]byte, 0, len(tmpl)+16)
		body = append(body, prefix...)
		body = fmt.Appendf(body, `"evt_bench_%d_%d"`, run, i)
		body = append(body, suffix...)
		bodies[i], headers[i] = body, stripetest.Sign(body, testSecret)
	}
	return bodies, headers
}

// deliver posts one event and checks it was accepted as new.
func deliver(client *http.Client, url string, body []byte, header string) error {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", header)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	answer, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(answer, []byte(`"duplicate":false`)) {
		return fmt.Errorf("answer %d: %s", resp.StatusCode, answer)
	}
	return nil
}

// baselineHandler does the least a correct webhook endpoint does: read the body within the
// limit, verify the signature, answer 200. It stores nothing.
func baselineHandler(cfg config.Listener) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		budget := &byteBudget{limit: maxBodiesInFlight * cfg.MaxBodyBytes}
		body, reserved, err := readBody(w, r, cfg.MaxBodyBytes, bytes.NewBuffer(make([]byte, 0, 4096)), budget)
		defer budget.release(reserved)
		if err == nil {
			_, err = verifySignature(body, r.Header.Get("Stripe-Signature"), cfg.WebhookSecrets, cfg.WebhookTolerance)
		}
		if err != nil {
			status, code, msg := refusal(err)
			httpx.WriteError(w, status, code, msg)
			return
		}
		httpx.WriteJSON(w, http.StatusOK, webhookAnswer{Received: true, Duplicate: false})
	})
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
