package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are the listener's Prometheus series, registered in one server's registry.
type metrics struct {
	requests   *prometheus.CounterVec // by HTTP status and contract code ("received" for 200)
	received   prometheus.Counter     // requests' 200 series, resolved once: it is the hot one
	duplicates prometheus.Counter
	publish    prometheus.Histogram
	inFlight   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := promauto.With(reg)
	requests := f.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_listener_webhook_requests_total",
		Help: "Webhook requests answered, by HTTP status and error code (received for 200).",
	}, []string{"status", "code"})
	return &metrics{
		requests: requests,
		received: requests.WithLabelValues("200", "received"),
		duplicates: f.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_listener_webhook_duplicates_total",
			Help: "Webhooks JetStream recognised as already stored (Nats-Msg-Id within the duplicate window).",
		}),
		publish: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "tollgate_listener_publish_duration_seconds",
			Help:    "Time from publishing an event to JetStream's acknowledgment (or failure).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		inFlight: f.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_listener_webhooks_in_flight",
			Help: "Webhook requests being handled now.",
		}),
	}
}
