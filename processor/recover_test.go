package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/processor/internal/cli"
	"github.com/tollgate/tollgate/processor/internal/processortest"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

// processor recover gives a database restored from a backup the events the stream retains, and
// says what the stream could not cover without a Stripe key.
func TestRecoverCommandReappliesTheStreamWindow(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	k := processortest.NewKit(t, "rc")
	opts := processortest.TestOptions()
	opts.RetainApplied = time.Hour
	b.Start(t, opts, b.DB.URL)
	events := k.Population(6)
	b.Publish(t, events...)
	want := processortest.Expect(t, b.Rules, events...)
	processortest.CaughtUp(t, b.DB.Pool, want, 20*time.Second)

	restored := pgtest.New(t) // restored from a backup taken before any of it
	env := map[string]string{"DATABASE_URL": restored.URL, "NATS_URL": b.Nats.URL()}
	var out, errOut bytes.Buffer
	err := run(t.Context(), []string{"recover", "--since", "1h"}, func(k string) string { return env[k] }, &out, &errOut)
	require.NoError(t, err, "stderr: %s", errOut.String())
	require.Contains(t, out.String(), "missing from the event store and applied")
	require.Contains(t, out.String(), "set STRIPE_API_KEY to backfill", "without a key it says what it could not cover")
	processortest.RequireReadModel(t, restored.Pool, want)

	err = run(t.Context(), []string{"recover", "--since", "-5m"}, func(k string) string { return env[k] }, &out, &errOut)
	require.ErrorIs(t, err, cli.ErrUsage)
}
