package projection

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are the processor's Prometheus series, registered in one process's registry. Every
// command builds its own (serve exposes it on /metrics; replay and redrive only fill it).
type Metrics struct {
	Events        *prometheus.CounterVec // applied events, by Stripe event type
	Outcomes      *prometheus.CounterVec // settled messages, by outcome
	Redeliveries  prometheus.Counter
	BatchSize     prometheus.Histogram
	BatchDuration prometheus.Histogram
	derive        prometheus.Histogram
	replay        prometheus.Histogram
	changed       prometheus.Counter
	undecodable   prometheus.Counter
	// checkpointMisses counts customers derived from scratch because an event of the batch was
	// not after any of their checkpoints (late deliveries, backfills).
	CheckpointMisses prometheus.Counter
	// checkpointRungResumes counts customers resumed from an older rung of their ladder because
	// an event of the batch was not after their newest checkpoint.
	CheckpointRungResumes prometheus.Counter
	// derivedEvents counts the events folded by derivations (the tails after checkpoints, or
	// whole histories).
	DerivedEvents prometheus.Counter
	Pending       prometheus.Gauge
	AckPending    prometheus.Gauge
	DeadLetters   prometheus.Gauge
	Paused        prometheus.Gauge
	StreamBytes   prometheus.Gauge
	StreamLimit   prometheus.Gauge
	OldestAge     prometheus.Gauge
	PurgeErrors   prometheus.Counter
}

// eventTypeLabel bounds the type label of events_total: the types the derivation reads and the
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

func NewMetrics(reg prometheus.Registerer) *Metrics {
	durationBuckets := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	batchBuckets := []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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
		derive: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "tollgate_processor_derive_duration_seconds",
			Help:    "Time to decode and derive one customer's whole history (pure CPU, no I/O).",
			Buckets: durationBuckets,
		}),
		replay: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "tollgate_processor_replay_duration_seconds",
			Help:    "Time to re-derive a set of customers from stored history in one transaction (lock, load, derive, write), by the consumer, replay and redrive alike.",
			Buckets: durationBuckets,
		}),
		changed: f.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_processor_entitlements_changed_total",
			Help: "Customer read-model rows written because their derivation changed.",
		}),
		undecodable: f.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_processor_unreadable_stored_events_total",
			Help: "Stored events the current code cannot parse or decode, left out of derivations (see the logs).",
		}),
		CheckpointMisses: f.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_processor_checkpoint_misses_total",
			Help: "Customers derived from their whole history because an event arrived at or before every checkpoint of theirs.",
		}),
		CheckpointRungResumes: f.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_processor_checkpoint_rung_resumes_total",
			Help: "Customers re-derived from an older checkpoint of their ladder because an event arrived at or before their newest checkpoint.",
		}),
		DerivedEvents: f.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_processor_derived_events_total",
			Help: "Events folded by derivations: the events after each customer's checkpoint, or its whole history.",
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
