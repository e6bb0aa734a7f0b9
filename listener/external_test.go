package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/pgtest"
	"github.com/tollgate/tollgate/testkit/stripetest"
	"github.com/tollgate/tollgate/testkit/wait"
)

// Every external event (567 bodies from other projects' test suites, 2014 to 2025) through the
// real listener and the real processor: each is taken (200), except the bodies whose created is
// not an integer (missing, or a digit string on an "object": "event" body: not a thin event,
// whose created is an RFC 3339 string), which get 400 invalid_payload; the processor reads every
// one taken without a dead letter.
func TestPipelineTakesExternalEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	db := pgtest.NewEmpty(t)
	runProcessorBinary(t, b.nats.URL(), db.URL)

	events := stripetest.ExternalEvents(t)
	require.Len(t, events, 567)
	var refused []string
	for i, ev := range events {
		var head struct {
			Object  string          `json:"object"`
			Created json.RawMessage `json:"created"`
		}
		require.NoError(t, json.Unmarshal(ev.Raw, &head), ev.Name)
		var created int64
		integer := json.Unmarshal(head.Created, &created) == nil && created > 0
		raw := stripetest.WithID(t, ev.Raw, fmt.Sprintf("evt_ext_%04d", i)) // ids repeat across files
		resp := stripetest.Deliver(t, b.url, raw, testSecret)
		if !integer && head.Object != "v2.core.event" {
			requireError(t, resp, http.StatusBadRequest, "invalid_payload")
			refused = append(refused, ev.Name)
			continue
		}
		require.Equal(t, http.StatusOK, resp.Status, "%s: %s", ev.Name, resp.Body)
	}
	require.Len(t, refused, 3, "the bodies without an integer created: %v", refused)

	wait.For(t, 120*time.Second, "every event taken is applied", func() bool {
		var n int
		return db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM stripe_events`).Scan(&n) == nil && n == len(events)-len(refused)
	})
	wait.For(t, 10*time.Second, "applied events leave the stream", func() bool { return b.msgCount(t) == 0 })
	var deadLetters int
	require.NoError(t, db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM dead_letters`).Scan(&deadLetters))
	require.Zero(t, deadLetters)
}
