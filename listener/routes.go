package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tollgate/tollgate/pkg/httpx"
	"github.com/tollgate/tollgate/pkg/stream"
)

// readyTimeout bounds the NATS round trip of one /readyz.
const readyTimeout = 2 * time.Second

func (s *server) routes(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhooks/stripe", s.handleWebhook)
	mux.HandleFunc("/webhooks/stripe", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", http.MethodPost)
		httpx.WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Stripe webhooks are POSTed")
	})
	mux.Handle("GET /healthz", httpx.Health())
	mux.Handle("GET /readyz", httpx.Ready(readyTimeout, s.logger, s.natsConnected, s.streamExists))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		httpx.WriteError(w, http.StatusNotFound, "not_found", "no such endpoint; webhooks go to POST /webhooks/stripe")
	})
	return mux
}

func (s *server) natsConnected(context.Context) error {
	if !s.nc.IsConnected() {
		return errors.New("nats: not connected")
	}
	return nil
}

func (s *server) streamExists(ctx context.Context) error {
	_, err := s.js.Stream(ctx, stream.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("jetstream: stream %s does not exist yet", stream.Name)
	}
	if err != nil {
		return fmt.Errorf("jetstream: stream %s: %w", stream.Name, err)
	}
	return nil
}
