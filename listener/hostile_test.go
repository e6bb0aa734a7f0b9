package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/stripetest"
)

// Hostile but well-signed events are refused with the field named, nothing is published, and
// the listener goes on storing the good events sent between them (a 5,000-byte subject once
// closed the NATS connection for good).
func TestWebhookRefusesWhatTheStoreCannotHold(t *testing.T) {
	t.Parallel()
	b := setup(t)
	long := strings.Repeat("x", 5000)
	sub := func(customer string) map[string]any {
		return stripetest.Subscription("sub_hostile", customer, "active", "price_pro")
	}
	tests := []struct {
		name   string
		event  stripetest.Event
		header func(raw []byte) string // nil: signed now
		code   string
		field  string
	}{
		{"5,000-byte customer id", stripetest.Event{ID: "evt_h1", Type: "customer.subscription.updated", Object: sub("cus_" + long)}, nil, "invalid_payload", "customer"},
		{"5,000-byte type", stripetest.Event{ID: "evt_h2", Type: long, Object: sub("cus_h2")}, nil, "invalid_payload", "type"},
		{"5,000-byte account", stripetest.Event{ID: "evt_h3", Type: "invoice.paid", Account: "acct_" + long, Object: sub("cus_h3")}, nil, "invalid_payload", "account"},
		{"NUL in the id", stripetest.Event{ID: "evt_\x00", Type: "invoice.paid", Object: sub("cus_h4")}, nil, "invalid_payload", "id"},
		{"10 KB id", stripetest.Event{ID: strings.Repeat("e", 10_000), Type: "invoice.paid", Object: sub("cus_h5")}, nil, "invalid_payload", "id"},
		{"created INT64_MAX", stripetest.Event{ID: "evt_h6", Type: "invoice.paid", Created: 1<<63 - 1, Object: sub("cus_h6")}, nil, "invalid_payload", "created"},
		{"created in year 10000", stripetest.Event{ID: "evt_h7", Type: "invoice.paid", Created: 253402300800, Object: sub("cus_h7")}, nil, "invalid_payload", "created"},
		{"signature ten years ahead", stripetest.Event{ID: "evt_h8", Type: "invoice.paid", Object: sub("cus_h8")},
			func(raw []byte) string { return stripetest.SignAt(raw, time.Now().AddDate(10, 0, 0), testSecret) }, "timestamp_outside_tolerance", ""},
		{"signature ten minutes ahead", stripetest.Event{ID: "evt_h9", Type: "invoice.paid", Object: sub("cus_h9")},
			func(raw []byte) string { return stripetest.SignAt(raw, time.Now().Add(10*time.Minute), testSecret) }, "timestamp_outside_tolerance", ""},
	}
	for _, tt := range tests {
		raw := tt.event.JSON(t)
		header := stripetest.Sign(raw, testSecret)
		if tt.header != nil {
			header = tt.header(raw)
		}
		resp := stripetest.Post(t, b.url, raw, header)
		requireError(t, resp, http.StatusBadRequest, tt.code)
		require.Contains(t, string(resp.Body), tt.field, tt.name)

		_, _, good := newEvent(t)
		require.Equal(t, http.StatusOK, stripetest.Deliver(t, b.url, good, testSecret).Status, "a good event after %s", tt.name)
	}
	// Invalid UTF-8 in an id is not rewritten into an id another event may have.
	raw := []byte(strings.Replace(string(stripetest.Event{ID: "evt_utf8_XX", Type: "invoice.paid", Object: sub("cus_u")}.JSON(t)), "XX", "\xff\xfe", 1))
	requireError(t, stripetest.Deliver(t, b.url, raw, testSecret), http.StatusBadRequest, "invalid_payload")

	require.Equal(t, uint64(len(tests)), b.msgCount(t), "only the good events were published")
	require.True(t, b.nc.IsConnected())
}
