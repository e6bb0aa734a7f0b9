package main

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/pkg/config"
)

// natsConn is what the server needs of the NATS connection besides JetStream.
type natsConn interface {
	IsConnected() bool
	MaxPayload() int64
}

// server is the listener's HTTP handler. It is safe for concurrent use.
type server struct {
	secrets        []string
	tolerance      time.Duration
	maxBodyBytes   int64
	publishTimeout time.Duration
	nc             natsConn
	js             jetstream.JetStream
	logger         *slog.Logger
	metrics        *metrics
	bodySlots      chan struct{} // one per body being read or handled: see maxBodiesInFlight
	bodies         bodyBuffers   // the buffers bodies are read into, reused
	handler        http.Handler
}

// newServer builds the handler of every route. Its metrics are registered in reg and served
// from reg at /metrics; reg must be fresh (one per server).
func newServer(cfg config.Listener, nc natsConn, js jetstream.JetStream, logger *slog.Logger, reg *prometheus.Registry) *server {
	s := &server{
		secrets:        cfg.WebhookSecrets,
		tolerance:      cfg.WebhookTolerance,
		maxBodyBytes:   cfg.MaxBodyBytes,
		publishTimeout: cfg.PublishTimeout,
		nc:             nc,
		js:             js,
		logger:         logger,
		metrics:        newMetrics(reg),
		bodySlots:      make(chan struct{}, maxBodiesInFlight),
	}
	s.handler = s.routes(reg)
	return s
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}
