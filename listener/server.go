package main

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/tollgate/tollgate/pkg/config"
)

// natsConn is what the server needs of the NATS connection besides JetStream.
type natsConn interface {
	IsConnected() bool
	MaxPayload() int64
}

// server is the listener's HTTP handler. It is safe for concurrent use.
type server struct {
	secrets        []config.WebhookSecret
	tolerance      time.Duration
	maxBodyBytes   int64
	publishTimeout time.Duration
	nc             natsConn
	js             jetstream.JetStream
	logger         *slog.Logger
	metrics        *metrics
	budget         *byteBudget // the bytes of bodies being read or handled: see maxBodiesInFlight
	bodies         bodyBuffers // the buffers bodies are read into, reused
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
		budget:         &byteBudget{limit: maxBodiesInFlight * cfg.MaxBodyBytes},
	}
	promauto.With(reg).NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tollgate_listener_body_bytes_reserved",
		Help: "Bytes reserved for webhook bodies being read or handled, out of tollgate_listener_body_bytes_budget.",
	}, func() float64 { return float64(s.budget.used.Load()) })
	promauto.With(reg).NewGauge(prometheus.GaugeOpts{
		Name: "tollgate_listener_body_bytes_budget",
		Help: "The most bytes webhook bodies may hold at once before a signature is checked; past it a webhook gets 503 overloaded.",
	}).Set(float64(s.budget.limit))
	s.handler = s.routes(reg)
	return s
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}
