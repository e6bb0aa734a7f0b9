package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/testkit/wait"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/testkit/stripetest"
)

func TestWebhookStoresTheExactBytes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id, customer, raw := newEvent(t)

	resp := stripetest.Deliver(t, b.url, raw, testSecret)

	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	require.JSONEq(t, `{"received":true,"duplicate":false}`, string(resp.Body))
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	msg, err := b.stream.GetLastMsgForSubject(t.Context(), stream.Subject(customer, "customer.subscription.updated"))
	require.NoError(t, err)
	require.Equal(t, raw, msg.Data)
	require.Equal(t, id, msg.Header.Get(jetstream.MsgIDHeader))
	require.Equal(t, "stripe.events."+customer+".customer.subscription.updated", msg.Subject)
	require.Equal(t, uint64(1), b.msgCount(t))
}

func TestWebhookSignatures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		secrets []string // configured
		sign    []string // the signatures in the header
	}{
		{"one secret", []string{testSecret}, []string{testSecret}},
		{"secret roll: two v1 signatures, the second matches", []string{testSecret}, []string{"whsec_rolled_away", testSecret}},
		{"secret roll: two v1 signatures, the first matches", []string{testSecret}, []string{testSecret, "whsec_not_yet_configured"}},
		{"two configured secrets, signed by the second", []string{"whsec_first", testSecret}, []string{testSecret}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupWith(t, setupOptions{config: func(c *config.Listener) { c.WebhookSecrets = unbound(tt.secrets...) }})
			_, _, raw := newEvent(t)
			resp := stripetest.Post(t, b.url, raw, stripetest.Sign(raw, tt.sign...))
			require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
			require.JSONEq(t, `{"received":true,"duplicate":false}`, string(resp.Body))
			require.Equal(t, uint64(1), b.msgCount(t))
		})
	}
}

// Real captured events are on api_version 2020-03-02, not stripe-go v76's 2023-10-16. Events of
// API versions before 2017-05-25 carry "request" as a string, which stripe-go's Event cannot
// decode; newer versions than the library knows must pass too.
func TestWebhookAcceptsEveryAPIVersion(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var payloads [][]byte
	for _, name := range []string{
		"customer.subscription.created.json",
		"customer.subscription.updated.json",
		"customer.subscription.deleted.json",
		"invoice.paid.json",
		"entitlements.active_entitlement_summary.updated.json",
	} {
		payloads = append(payloads, stripetest.Fixture(t, name))
	}
	payloads = append(payloads,
		[]byte(`{"id":"evt_2016","object":"event","api_version":"2016-07-06","created":1469000000,"livemode":false,"pending_webhooks":1,"request":"req_8s3kDSzRbWqXvF","type":"customer.subscription.updated","data":{"object":{"id":"sub_2016","object":"subscription","customer":"cus_2016","status":"active"}}}`),
		[]byte(`{"id":"evt_future","object":"event","api_version":"2031-01-01.unknown","created":1764000000,"livemode":true,"type":"customer.subscription.created","context":"acct_x","data":{"object":{"id":"sub_f","object":"subscription","customer":"cus_future","status":"trialing","brand_new_field":{"nested":[1,2]}}}}`),
	)

	for i, raw := range payloads {
		ev, err := stripeevent.Parse(raw)
		require.NoError(t, err)
		resp := stripetest.Deliver(t, b.url, raw, testSecret)
		require.Equal(t, http.StatusOK, resp.Status, "%s (%s): %s", ev.ID, ev.APIVersion, resp.Body)
		require.JSONEq(t, `{"received":true,"duplicate":false}`, string(resp.Body))
		msg, err := b.stream.GetLastMsgForSubject(t.Context(), stream.Subject(ev.CustomerID, ev.Type))
		require.NoError(t, err)
		require.Equal(t, raw, msg.Data)
		require.Equal(t, uint64(i+1), b.msgCount(t))
	}
}

func TestWebhookDuplicateIsStoredOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, _, raw := newEvent(t)

	first := stripetest.Deliver(t, b.url, raw, testSecret)
	require.JSONEq(t, `{"received":true,"duplicate":false}`, string(first.Body))
	// Stripe's retry is the same body, signed again with a later timestamp.
	again := stripetest.Post(t, b.url, raw, stripetest.SignAt(raw, time.Now().Add(time.Minute), testSecret))
	require.Equal(t, http.StatusOK, again.Status)
	require.JSONEq(t, `{"received":true,"duplicate":true}`, string(again.Body))
	require.Equal(t, uint64(1), b.msgCount(t))
}

func TestWebhookRefusesAndPublishesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, _, valid := newEvent(t)
	tampered := bytes.Replace(valid, []byte(`"active"`), []byte(`"canceled"`), 1)
	require.NotEqual(t, valid, tampered)
	old := time.Now().Add(-b.cfg.WebhookTolerance - time.Minute)
	event := func(e stripetest.Event) []byte {
		if e.Object == nil {
			e.Object = stripetest.Subscription("sub_bad", "cus_bad", "active", "price_pro")
		}
		return e.JSON(t)
	}

	tests := []struct {
		name       string
		body       []byte
		header     string
		wantStatus int
		wantCode   string
	}{
		{"missing signature", valid, "", 400, "invalid_signature"},
		{"wrong secret", valid, stripetest.Sign(valid, "whsec_someone_else"), 400, "invalid_signature"},
		{"body changed after signing", tampered, stripetest.Sign(valid, testSecret), 400, "invalid_signature"},
		{"malformed header", valid, "t=notanumber,v1=abc", 400, "invalid_signature"},
		{"no v1 signature", valid, fmt.Sprintf("t=%d,v0=abcd", time.Now().Unix()), 400, "invalid_signature"},
		{"old timestamp", valid, stripetest.SignAt(valid, old, testSecret), 400, "timestamp_outside_tolerance"},
		{"old timestamp and wrong secret", valid, stripetest.SignAt(valid, old, "whsec_someone_else"), 400, "invalid_signature"},
		{"bad JSON", []byte(`{"id":"evt_1",`), "", 400, "invalid_payload"},
		{"JSON but not an object", []byte(`["evt_1"]`), "", 400, "invalid_payload"},
		{"no id", event(stripetest.Event{Type: "customer.subscription.updated", Created: 1700000000}), "", 400, "invalid_payload"},
		{"no type", event(stripetest.Event{ID: "evt_no_type", Created: 1700000000}), "", 400, "invalid_payload"},
		{"no created", []byte(`{"id":"evt_no_created","object":"event","type":"customer.created","data":{"object":{"id":"cus_1","object":"customer"}}}`), "", 400, "invalid_payload"},
		{"empty body", []byte{}, "", 400, "invalid_payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := tt.header
			if header == "" && tt.wantCode == "invalid_payload" {
				header = stripetest.Sign(tt.body, testSecret) // well signed, bad content
			}
			resp := stripetest.Post(t, b.url, tt.body, header)
			requireError(t, resp, tt.wantStatus, tt.wantCode)
		})
	}
	require.Zero(t, b.msgCount(t), "nothing is published for a 4xx")
	require.NotContains(t, b.logs.String(), `"level":"ERROR"`)
}

func TestWebhookOversizeBody(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{config: func(c *config.Listener) { c.MaxBodyBytes = 4096 }})
	big := stripetest.Event{ID: "evt_big", Type: "customer.updated", Pad: 8192}.JSON(t)

	t.Run("Content-Length over the limit: refused before reading", func(t *testing.T) {
		body := &countingReader{r: bytes.NewReader(big)}
		req := httptest.NewRequest(http.MethodPost, "/webhooks/stripe", body)
		req.ContentLength = int64(len(big))
		req.Header.Set("Stripe-Signature", stripetest.Sign(big, testSecret))
		rec := httptest.NewRecorder()
		b.srv.ServeHTTP(rec, req)
		requireError(t, stripetest.Response{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}, 413, "payload_too_large")
		require.Zero(t, body.n.Load(), "not a byte of the body is read")
	})
	t.Run("unknown length: reading stops at the limit", func(t *testing.T) {
		body := &countingReader{r: bytes.NewReader(big)}
		req := httptest.NewRequest(http.MethodPost, "/webhooks/stripe", body)
		req.ContentLength = -1 // chunked
		req.Header.Set("Stripe-Signature", stripetest.Sign(big, testSecret))
		rec := httptest.NewRecorder()
		b.srv.ServeHTTP(rec, req)
		requireError(t, stripetest.Response{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}, 413, "payload_too_large")
		require.LessOrEqual(t, body.n.Load(), int64(4096+bytes.MinRead), "reads stop near the limit")
		require.Less(t, body.n.Load(), int64(len(big)))
	})
	t.Run("over real HTTP", func(t *testing.T) {
		requireError(t, stripetest.Deliver(t, b.url, big, testSecret), 413, "payload_too_large")
	})
	t.Run("exactly the limit is fine", func(t *testing.T) {
		_, _, raw := newEvent(t)
		// Whitespace before the closing brace keeps the JSON valid.
		padded := append(bytes.Clone(raw[:len(raw)-1]), []byte(strings.Repeat(" ", 4096-len(raw))+"}")...)
		require.Len(t, padded, 4096)
		resp := stripetest.Deliver(t, b.url, padded, testSecret)
		require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	})
	require.Equal(t, uint64(1), b.msgCount(t))
}

// An event the NATS server would refuse (its max_payload) gets 413, never 503: a retry cannot
// help. MAX_BODY_BYTES is left at 1 MiB.
func TestWebhookOverNATSMaxPayload(t *testing.T) {
	t.Parallel()
	const maxPayload = 16 << 10
	b := setupWith(t, setupOptions{natsOptions: func(o *natsserver.Options) { o.MaxPayload = maxPayload }})
	require.Equal(t, int64(1<<20), b.cfg.MaxBodyBytes)

	big := stripetest.Event{ID: "evt_over_max_payload", Type: "customer.updated", Pad: 20 << 10}.JSON(t)
	requireError(t, stripetest.Deliver(t, b.url, big, testSecret), 413, "payload_too_large")

	// Ids are at most 255 bytes (stripeevent.Validate), so the headers always fit in the room
	// kept for them: a body just under the limit with the longest id is stored.
	longID := "evt_" + strings.Repeat("x", 251)
	tight := stripetest.Event{ID: longID, Type: "customer.updated"}.JSON(t)
	tight = stripetest.Event{ID: longID, Type: "customer.updated", Pad: maxPayload - natsHeaderRoom - len(tight) - 100}.JSON(t)
	require.Less(t, len(tight), maxPayload-natsHeaderRoom)
	require.Equal(t, http.StatusOK, stripetest.Deliver(t, b.url, tight, testSecret).Status)
	require.Equal(t, uint64(1), b.msgCount(t))
	_, _, fits := newEvent(t)
	require.Equal(t, http.StatusOK, stripetest.Deliver(t, b.url, fits, testSecret).Status)
}

func TestWebhookQueueUnavailable(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{config: func(c *config.Listener) { c.PublishTimeout = 2 * time.Second }})
	code, _ := b.get(t, "/readyz")
	require.Equal(t, http.StatusOK, code)

	b.nats.Shutdown()
	wait.For(t, 5*time.Second, "client sees the disconnect", func() bool { return !b.nc.IsConnected() })

	_, _, lost := newEvent(t)
	requireError(t, stripetest.Deliver(t, b.url, lost, testSecret), 503, "queue_unavailable")
	code, body := b.get(t, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.JSONEq(t, `{"ready":false,"reason":"nats: not ready (details in the log)"}`, body)
	code, _ = b.get(t, "/healthz")
	require.Equal(t, http.StatusOK, code, "the process still runs")

	b.nats.Restart(t)
	wait.For(t, 10*time.Second, "ready again", func() bool { code, _ := b.get(t, "/readyz"); return code == http.StatusOK })

	// The next delivery is stored. JetStream may need a moment after its restart: poll.
	id, customer, next := newEvent(t)
	var resp stripetest.Response
	wait.For(t, 10*time.Second, "event stored after restart", func() bool {
		resp = stripetest.Deliver(t, b.url, next, testSecret)
		return resp.Status == http.StatusOK
	})
	require.JSONEq(t, `{"received":true,"duplicate":false}`, string(resp.Body))
	msg, err := b.stream.GetLastMsgForSubject(t.Context(), stream.Subject(customer, "customer.subscription.updated"))
	require.NoError(t, err)
	require.Equal(t, id, msg.Header.Get(jetstream.MsgIDHeader))
	require.Equal(t, next, msg.Data)
}

// JetStream that never acknowledges: the stream is gone and a plain subscriber swallows the
// subject, so the publish waits for PUBLISH_TIMEOUT.
func TestWebhookAckTimeout(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{config: func(c *config.Listener) { c.PublishTimeout = 300 * time.Millisecond }})
	js, err := jetstream.New(b.nats.Connect(t))
	require.NoError(t, err)
	require.NoError(t, js.DeleteStream(t.Context(), stream.Name))
	sub, err := b.nats.Connect(t).SubscribeSync(stream.AllSubjects)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	code, body := b.get(t, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.JSONEq(t, `{"ready":false,"reason":"jetstream: not ready (details in the log)"}`, body)

	_, _, raw := newEvent(t)
	start := time.Now()
	requireError(t, stripetest.Deliver(t, b.url, raw, testSecret), 503, "queue_unavailable")
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	_, err = sub.NextMsg(5 * time.Second)
	require.NoError(t, err, "the event was sent and never acknowledged")
	require.Contains(t, b.logs.String(), "context deadline exceeded")
}

func TestHealthReadyAndOtherRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name, method, path string
		wantStatus         int
		wantBody           string
	}{
		{"healthz", http.MethodGet, "/healthz", 200, `{"status":"ok"}`},
		{"readyz", http.MethodGet, "/readyz", 200, `{"ready":true}`},
		{"GET on the webhook", http.MethodGet, "/webhooks/stripe", 405, `{"error":{"code":"method_not_allowed","message":"Stripe webhooks are POSTed"}}`},
		{"unknown path", http.MethodPost, "/webhooks/paypal", 404, `{"error":{"code":"not_found","message":"no such endpoint; webhooks go to POST /webhooks/stripe"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			b.srv.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			require.Equal(t, tt.wantStatus, rec.Code)
			require.JSONEq(t, tt.wantBody, rec.Body.String())
		})
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, _, raw := newEvent(t)
	require.Equal(t, 200, stripetest.Deliver(t, b.url, raw, testSecret).Status)
	require.Equal(t, 200, stripetest.Deliver(t, b.url, raw, testSecret).Status)
	require.Equal(t, 400, stripetest.Deliver(t, b.url, raw, "whsec_wrong").Status)

	code, body := b.get(t, "/metrics")
	require.Equal(t, http.StatusOK, code)
	for _, want := range []string{
		`tollgate_listener_webhook_requests_total{code="received",status="200"} 2`,
		`tollgate_listener_webhook_requests_total{code="invalid_signature",status="400"} 1`,
		`tollgate_listener_webhook_duplicates_total 1`,
		`tollgate_listener_publish_duration_seconds_count 2`,
		`tollgate_listener_webhooks_in_flight 0`,
		`go_goroutines `,
	} {
		require.Contains(t, body, want)
	}
}
