package stripetest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76/webhook"
	"go.uber.org/goleak"

	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/testkit/stripetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSignVerifiesWithEverySecret(t *testing.T) {
	t.Parallel()
	payload := []byte(`{"id":"evt_1"}`)
	header := stripetest.Sign(payload, "whsec_old", "whsec_new")

	require.Equal(t, 2, strings.Count(header, "v1="))
	require.Equal(t, 1, strings.Count(header, "t="))
	require.NoError(t, webhook.ValidatePayload(payload, header, "whsec_old"))
	require.NoError(t, webhook.ValidatePayload(payload, header, "whsec_new"))
	require.ErrorIs(t, webhook.ValidatePayload(payload, header, "whsec_other"), webhook.ErrNoValidSignature)
	require.ErrorIs(t, webhook.ValidatePayload([]byte(`{"id":"evt_2"}`), header, "whsec_old"), webhook.ErrNoValidSignature)
}

func TestSignAtChosenTimestamp(t *testing.T) {
	t.Parallel()
	payload := []byte(`{"id":"evt_1"}`)
	at := time.Now().Add(-time.Hour)
	header := stripetest.SignAt(payload, at, "whsec_a")

	require.True(t, strings.HasPrefix(header, "t="+strconv.FormatInt(at.Unix(), 10)+",v1="), header)
	require.ErrorIs(t, webhook.ValidatePayloadWithTolerance(payload, header, "whsec_a", 5*time.Minute), webhook.ErrTooOld)
	require.NoError(t, webhook.ValidatePayloadWithTolerance(payload, header, "whsec_a", 2*time.Hour))
	require.Panics(t, func() { stripetest.SignAt(payload, at) })
}

func TestEventJSONIsAStripeEvent(t *testing.T) {
	t.Parallel()
	raw := stripetest.Event{
		ID:                 "evt_1",
		Type:               "customer.subscription.updated",
		Created:            1700000000,
		Object:             stripetest.Subscription("sub_1", "cus_1", "active", "price_1"),
		PreviousAttributes: map[string]any{"status": "trialing"},
		Pad:                100,
	}.JSON(t)

	ev, err := stripeevent.Parse(raw)
	require.NoError(t, err)
	require.Equal(t, "evt_1", ev.ID)
	require.Equal(t, "customer.subscription.updated", ev.Type)
	require.Equal(t, int64(1700000000), ev.Created)
	require.Equal(t, "cus_1", ev.CustomerID)
	require.Equal(t, "2023-10-16", ev.APIVersion)
	require.JSONEq(t, `{"status":"trialing"}`, string(ev.PreviousAttributes))
	require.Greater(t, len(raw), 100)

	// Empty id and type stay empty, for invalid events.
	_, err = stripeevent.Parse(stripetest.Event{}.JSON(t))
	require.ErrorIs(t, err, stripeevent.ErrInvalid)
}

func TestFixtureAndWithID(t *testing.T) {
	t.Parallel()
	raw := stripetest.Fixture(t, "customer.subscription.created.json")
	ev, err := stripeevent.Parse(raw)
	require.NoError(t, err)
	require.Equal(t, "evt_1J02NfJDPojXS6LNawmt1X8q", ev.ID)
	require.Equal(t, "2020-03-02", ev.APIVersion)

	renamed := stripetest.WithID(t, raw, "evt_copy_1")
	ev2, err := stripeevent.Parse(renamed)
	require.NoError(t, err)
	require.Equal(t, "evt_copy_1", ev2.ID)
	require.Equal(t, ev.Type, ev2.Type)
	require.Equal(t, ev.CustomerID, ev2.CustomerID)
	require.JSONEq(t, string(ev.Object), string(ev2.Object))
}

func TestDeliverPostsLikeStripe(t *testing.T) {
	t.Parallel()
	type seen struct {
		method, contentType, signature string
		body                           []byte
	}
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.Header.Get("Content-Type"), r.Header.Get("Stripe-Signature"), b}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]bool{"received": true})
	}))
	t.Cleanup(srv.Close)

	payload := []byte(`{"id":"evt_1"}`)
	resp := stripetest.Deliver(t, srv.URL+"/webhooks/stripe", payload, "whsec_a")
	require.Equal(t, http.StatusOK, resp.Status)
	require.JSONEq(t, `{"received":true}`, string(resp.Body))

	s := <-got
	require.Equal(t, http.MethodPost, s.method)
	require.True(t, strings.HasPrefix(s.contentType, "application/json"))
	require.Equal(t, payload, s.body)
	require.NoError(t, webhook.ValidatePayload(s.body, s.signature, "whsec_a"))

	// Post with no header sends none.
	stripetest.Post(t, srv.URL, payload, "")
	require.Empty(t, (<-got).signature)
}
