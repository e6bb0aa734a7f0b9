package main

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

// newRegistry is the registry of one process's series: the Go runtime's and the process's, and
// those each package registers on it.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// newServer is the processor's HTTP handler: every route is here.
func newServer(reg *prometheus.Registry, logger *slog.Logger, checks ...httpx.Check) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", httpx.Health())
	mux.Handle("GET /readyz", httpx.Ready(readyTimeout, logger, checks...))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

// newHTTPServer serves handler with every timeout set: a client that sends its headers or body
// slowly, reads the answer slowly or idles holds a connection (and its goroutine) for a bounded
// time only.
func newHTTPServer(handler http.Handler, logger *slog.Logger) *http.Server {
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

func natsCheck(nc natsStatus) httpx.Check {
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

func postgresCheck(db pinger) httpx.Check {
	return func(ctx context.Context) error {
		if err := db.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		return nil
	}
}

// consumerCheck fails until the JetStream consumer exists (the stream may not exist yet).
func consumerCheck(started *atomic.Bool) httpx.Check {
	return func(context.Context) error {
		if !started.Load() {
			return errors.New("consumer: not started yet (waiting for JetStream stream)")
		}
		return nil
	}
}
