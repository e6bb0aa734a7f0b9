// Package health is the processor's HTTP surface besides the admin API and the console:
// /healthz, /readyz with its readiness checks, /metrics, and the server's timeouts.
package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tollgate/tollgate/pkg/httpx"
)

// readyTimeout bounds one /readyz answer.
const readyTimeout = 2 * time.Second

// NewRegistry is the registry of one process's series: the Go runtime's and the process's, and
// those each package registers on it.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// NewServer is the processor's HTTP handler: every route is here.
func NewServer(reg *prometheus.Registry, logger *slog.Logger, checks ...httpx.Check) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", httpx.Health())
	mux.Handle("GET /readyz", httpx.Ready(readyTimeout, logger, checks...))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

// NewHTTPServer serves handler with every timeout set: a client that sends its headers or body
// slowly, reads the answer slowly or idles holds a connection (and its goroutine) for a bounded
// time only.
func NewHTTPServer(handler http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second, // /metrics and the admin pages answer in far less
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// natsStatus is the part of *nats.Conn readiness reads.
type natsStatus interface {
	Status() nats.Status
}

// NATSCheck fails while the NATS connection is not connected.
func NATSCheck(nc natsStatus) httpx.Check {
	return func(context.Context) error {
		if s := nc.Status(); s != nats.CONNECTED {
			return fmt.Errorf("nats: %s", s)
		}
		return nil
	}
}

// pinger is the part of a pool readiness reads.
type pinger interface {
	Ping(ctx context.Context) error
}

// PostgresCheck fails while Postgres does not answer a ping.
func PostgresCheck(db pinger) httpx.Check {
	return func(ctx context.Context) error {
		if err := db.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		return nil
	}
}

// ConsumerCheck fails until the JetStream consumer exists (the stream may not exist yet).
func ConsumerCheck(started *atomic.Bool) httpx.Check {
	return func(context.Context) error {
		if !started.Load() {
			return errors.New("consumer: not started yet (waiting for JetStream stream)")
		}
		return nil
	}
}
