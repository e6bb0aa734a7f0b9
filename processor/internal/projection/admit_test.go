package projection_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/processortest"

	"github.com/tollgate/tollgate/processor/internal/projection"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/pkg/subscription"
)

func TestAdmit(t *testing.T) {
	t.Parallel()
	k := processortest.NewKit(t, "f")
	for _, tc := range []struct {
		name      string
		raw       []byte
		permanent bool
		wrapped   error
	}{
		{"not JSON", []byte("<html>"), true, stripeevent.ErrInvalid},
		{"no id", []byte(`{"type":"customer.created","created":1,"data":{"object":{"object":"customer","id":"cus_1"}}}`), true, stripeevent.ErrInvalid},
		{"NUL in the customer", k.CustomerCreated("cus_\x00", processortest.T0, "u"), true, nil},
		{"NUL in the id", k.Edit(k.CustomerCreated("cus_1", processortest.T0, "u"), func(ev, _ map[string]any) { ev["id"] = "evt_\x00" }), true, nil},
		{"status not a string", k.Edit(k.Subscription("customer.subscription.updated", "cus_1", "sub_1", "active", "price_1", processortest.T0, nil),
			func(_, obj map[string]any) { obj["status"] = 42 }), false, subscription.ErrUndecodable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := projection.Admit(tc.raw)
			var poison *projection.PoisonError
			require.ErrorAs(t, err, &poison)
			require.Equal(t, tc.permanent, poison.Permanent)
			if tc.wrapped != nil {
				require.ErrorIs(t, err, tc.wrapped)
			}
		})
	}
	a, err := projection.Admit(k.ProductUpdated(processortest.T0))
	require.NoError(t, err, "an event of no customer is admitted without decoding")
	require.Empty(t, a.Event.CustomerID)
}

func TestFailureClassification(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		err     error
		content bool
	}{
		{"data exception", &pgconn.PgError{Code: "22021"}, true},
		{"index row too large", &pgconn.PgError{Code: "54000"}, true},
		{"derivation panicked", projection.ErrDerivePanic, true},
		{"serialization failure", &pgconn.PgError{Code: "40001"}, false},
		{"deadlock", &pgconn.PgError{Code: "40P01"}, false},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, false},
		{"unknown", errors.New("something else"), false},
	} {
		require.Equal(t, tc.content, projection.IsContentError(tc.err), tc.name)
		// Alone and with Postgres answering, every failure but the retryable ones is the
		// message's own: an unknown error counts attempts too, never retried for ever.
		var poison *projection.PoisonError
		wantPoison := tc.content || tc.name == "unknown"
		require.Equal(t, wantPoison, errors.As(projection.AsPoison(tc.err), &poison), tc.name)
	}
	for _, tc := range []struct {
		n    uint64
		base time.Duration
	}{{0, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {6, 32 * time.Second}, {7, time.Minute}, {1000, time.Minute}} {
		d := projection.RetryDelay(tc.n)
		require.GreaterOrEqual(t, d, tc.base/2, "retry %d", tc.n)
		require.Less(t, d, tc.base*3/2, "retry %d", tc.n)
	}
	seen := map[time.Duration]bool{}
	for range 20 {
		seen[projection.RetryDelay(3)] = true
	}
	require.Greater(t, len(seen), 1, "redelivery delays are jittered")
}
