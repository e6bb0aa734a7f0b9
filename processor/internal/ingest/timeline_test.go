package ingest_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/failover"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/processor/internal/ingest"
	"github.com/tollgate/tollgate/processor/internal/processortest"
	"github.com/tollgate/tollgate/processor/internal/projection"
	"github.com/tollgate/tollgate/testkit/pgtest"
	"github.com/tollgate/tollgate/testkit/wait"
)

// A standby promoted under asynchronous replication lacks the primary's last commits, which the
// processor had acknowledged. With the stream retaining applied events, the processor sees the
// new timeline and gives the new primary the events it lacks (here: all of them, a database that
// recorded another timeline and holds nothing), derived as the consumer derives them, and only
// then records the new timeline.
func TestNewTimelineRegainsTheRetainedEvents(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	k := processortest.NewKit(t, "tl")
	opts := processortest.TestOptions()
	opts.RetainApplied = time.Hour
	b.Start(t, opts, b.DB.URL)
	events := k.Population(12)
	b.Publish(t, events...)
	want := processortest.Expect(t, b.Rules, events...)
	processortest.CaughtUp(t, b.DB.Pool, want, 20*time.Second)
	b.Drained(t, opts.Durable, 10*time.Second)
	s, err := b.JS.Stream(t.Context(), stream.Name)
	require.NoError(t, err)
	require.Equal(t, uint64(len(events)), s.CachedInfo().State.Msgs, "applied events retained for STREAM_RETAIN_APPLIED")

	promoted := pgtest.New(t) // the new primary: none of the commits reached it
	tli, err := failover.Timeline(t.Context(), promoted.Pool)
	require.NoError(t, err)
	_, err = promoted.Pool.Exec(t.Context(), `INSERT INTO database_timeline (timeline) VALUES ($1)`, tli+1)
	require.NoError(t, err)
	log := processortest.TestLogger(t)
	proj := &projection.Projector{DB: promoted.Pool, Rules: b.Rules, Cache: projection.NewEventCache(projection.DefaultEventCacheSize),
		Log: log, Metrics: projection.NewMetrics(prometheus.NewRegistry())}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ingest.WatchTimeline(ctx, promoted.Pool, b.JS, proj, log) }()
	t.Cleanup(func() { cancel(); <-done })
	processortest.CaughtUp(t, promoted.Pool, want, 20*time.Second)
	wait.For(t, 10*time.Second, "the new timeline recorded", func() bool {
		var recorded int64
		return promoted.Pool.QueryRow(t.Context(), `SELECT timeline FROM database_timeline`).Scan(&recorded) == nil && recorded == tli
	})
}
