package ingest

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the consumer's series: what was fetched and settled, the stream's size and the
// consumer's backlog. The metric names are the processor's since before the split (dashboards
// and alerts read them).
type Metrics struct {
	Events        *prometheus.CounterVec // applied events, by Stripe event type
	Outcomes      *prometheus.CounterVec // settled messages, by outcome
	Redeliveries  prometheus.Counter
	BatchSize     prometheus.Histogram
	BatchDuration prometheus.Histogram
	Pending       prometheus.Gauge
	AckPending    prometheus.Gauge
	DeadLetters   prometheus.Gauge
	Paused        prometheus.Gauge
	StreamBytes   prometheus.Gauge
	StreamLimit   prometheus.Gauge
	OldestAge     prometheus.Gauge
	PurgeErrors   prometheus.Counter
}

// EventTypeLabel bounds the type label of events_total: the types the derivation reads and the
// common billing ones keep their name, every other type (anyone with a webhook secret may send
// any string) is "other".
func EventTypeLabel(t string) string {
	switch t {
	case "checkout.session.async_payment_succeeded", "checkout.session.completed",
		"customer.created", "customer.deleted", "customer.updated",
		"customer.subscription.created", "customer.subscription.deleted", "customer.subscription.paused",
		"customer.subscription.pending_update_applied", "customer.subscription.pending_update_expired",
		"customer.subscription.resumed", "customer.subscription.trial_will_end", "customer.subscription.updated",
		"entitlements.active_entitlement_summary.updated",
		"invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_failed", "invoice.payment_succeeded",
		"invoice.upcoming", "invoice.updated", "charge.succeeded", "charge.failed", "charge.refunded",
		"payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.created",
		"tollgate.snapshot.subscription", "tollgate.snapshot.customer":
		return t
	}
	return "other"
}

// NewMetrics registers the consumer's series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	durationBuckets := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	batchBuckets := []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000}
	f := promauto.With(reg)
	return &Metrics{
		Events: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_processor_events_total",
			Help: "Events applied to the event store and the read model (acknowledged), by Stripe event type.",
		}, []string{"type"}),
		StreamBytes: f.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_stream_bytes",
			Help: "Bytes the JetStream stream holds now: events not yet applied, plus at most the last batch (applied events are purged after each batch).",
		}),
		StreamLimit: f.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_stream_max_bytes",
			Help: "The stream's size limit (-1: none). At the limit webhooks get 503; alert at 50% of it.",
		}),
		OldestAge: f.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_stream_oldest_unapplied_age_seconds",
			Help: "Age of the oldest event not yet applied: the first in the stream above the processor consumer's ack floor (0 when none). Alert above a few minutes.",
		}),
		PurgeErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_stream_purge_errors_total",
			Help: "Failed purges of applied events from the stream. Harmless alone (the next purge removes them); rising steadily, the stream fills with applied events.",
		}),
		Outcomes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_processor_messages_total",
			Help: "JetStream messages settled, by outcome: ack, retry (nak: transient failure), poison_retry (nak: the message's own fault, not yet dead-lettered), dead_letter (term), released (nak: fetched ahead, handed back unapplied at shutdown or during an outage).",
		}, []string{"outcome"}),
		Redeliveries: f.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_processor_redeliveries_total",
			Help: "Messages received that JetStream had delivered before (NumDelivered > 1).",
		}),
		BatchSize: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "tollgate_processor_batch_size",
			Help:    "Messages per fetched batch.",
			Buckets: batchBuckets,
		}),
		BatchDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "tollgate_processor_batch_duration_seconds",
			Help:    "Time from a batch's fetch to its last acknowledgment.",
			Buckets: durationBuckets,
		}),
		Pending: f.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_processor_consumer_pending",
			Help: "Messages of the stream not yet delivered to the processor's consumer (refreshed periodically).",
		}),
		AckPending: f.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_processor_consumer_ack_pending",
			Help: "Messages delivered to the processor's consumer and not yet acknowledged (refreshed periodically).",
		}),
		DeadLetters: f.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_processor_dead_letters",
			Help: "Rows in dead_letters (refreshed periodically).",
		}),
		Paused: f.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_processor_paused",
			Help: "1 while fetching is paused because Postgres does not answer.",
		}),
	}
}
