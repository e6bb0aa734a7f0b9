package stripeevent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/stripeevent"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	good := stripeevent.Event{ID: "evt_1", Type: "invoice.paid", Created: 1234567890, CustomerID: "cus_1"}
	tests := []struct {
		name  string
		edit  func(*stripeevent.Event)
		field string // "" when valid
	}{
		{"valid", func(*stripeevent.Event) {}, ""},
		{"placeholder created is fine", func(e *stripeevent.Event) { e.Created = 1 }, ""},
		{"created an hour ahead (clock skew)", func(e *stripeevent.Event) { e.Created = now.Add(time.Hour).Unix() }, ""},
		{"255-byte id", func(e *stripeevent.Event) { e.ID = strings.Repeat("e", 255) }, ""},
		{"no customer, no account", func(e *stripeevent.Event) { e.CustomerID = "" }, ""},
		{"empty id", func(e *stripeevent.Event) { e.ID = "" }, "id"},
		{"NUL in id", func(e *stripeevent.Event) { e.ID = "evt_\x00" }, "id"},
		{"10 KB id", func(e *stripeevent.Event) { e.ID = strings.Repeat("e", 10_000) }, "id"},
		{"rewritten invalid UTF-8 in id", func(e *stripeevent.Event) { e.ID = "evt_\uFFFD" }, "id"},
		{"space in id", func(e *stripeevent.Event) { e.ID = "evt 1" }, "id"},
		{"5,000-byte type", func(e *stripeevent.Event) { e.Type = strings.Repeat("t", 5000) }, "type"},
		{"newline in account", func(e *stripeevent.Event) { e.Account = "acct_\n" }, "account"},
		{"5,000-byte customer", func(e *stripeevent.Event) { e.CustomerID = strings.Repeat("c", 5000) }, "customer"},
		{"created zero", func(e *stripeevent.Event) { e.Created = 0 }, "created"},
		{"created INT64_MAX", func(e *stripeevent.Event) { e.Created = 1<<63 - 1 }, "created"},
		{"created in year 10000", func(e *stripeevent.Event) { e.Created = 253402300800 }, "created"},
		{"created two days ahead", func(e *stripeevent.Event) { e.Created = now.Add(48 * time.Hour).Unix() }, "created"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev := good
			tt.edit(&ev)
			err := stripeevent.Validate(ev, now)
			if tt.field == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, stripeevent.ErrInvalid)
			require.ErrorIs(t, err, stripeevent.ErrUnstorable)
			require.Contains(t, err.Error(), tt.field)
		})
	}
}

func TestValidateFromStripe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, id, typ, field string // field "" when accepted
	}{
		{"a Stripe event", "evt_1", "customer.subscription.updated", ""},
		{"a thin event", "evt_2", "v1.customer.subscription.updated", ""},
		{"a snapshot type", "evt_3", "tollgate.snapshot.subscription", "type"},
		{"any tollgate. type", "evt_4", "tollgate.anything", "type"},
		{"a snapshot id", "tgsnap_1", "customer.subscription.updated", "id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := stripeevent.ValidateFromStripe(stripeevent.Event{ID: tt.id, Type: tt.typ})
			require.Equal(t, tt.field != "", stripeevent.IsOwn(stripeevent.Event{ID: tt.id, Type: tt.typ}))
			if tt.field == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, stripeevent.ErrInvalid)
			require.ErrorIs(t, err, stripeevent.ErrReserved)
			require.ErrorContains(t, err, tt.field+" ")
		})
	}
	require.True(t, stripeevent.IsOwn(stripeevent.Event{ID: stripeevent.SnapshotIDPrefix + "x", Type: stripeevent.SnapshotType("customer")}))
}
