package projection

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the projection's series: derivations, their cost and what they changed. Every
// command that applies builds its own (serve exposes them on /metrics; replay and redrive only
// fill them).
type Metrics struct {
	derive      prometheus.Histogram
	replay      prometheus.Histogram
	changed     prometheus.Counter
	undecodable prometheus.Counter
	// CheckpointMisses counts customers derived from scratch because an event of the batch was
	// not after any of their checkpoints (late deliveries, backfills).
	CheckpointMisses prometheus.Counter
	// CheckpointRungResumes counts customers resumed from an older rung of their ladder because
	// an event of the batch was not after their newest checkpoint.
	CheckpointRungResumes prometheus.Counter
	// DerivedEvents counts the events folded by derivations (the tails after checkpoints, or
	// whole histories).
	DerivedEvents prometheus.Counter
}

// NewMetrics registers the projection's series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	durationBuckets := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	f := promauto.With(reg)
	return &Metrics{
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
	}
}
