// Package stripetest is the one place tests sign Stripe webhooks, build Stripe event JSON, read
// the captured events of pkg/testdata/stripe-events and deliver events to a webhook endpoint.
// Test code only.
//
// Signatures are computed by stripe-go v76's webhook.GenerateTestSignedPayload, so they are
// exactly what Stripe sends: "t=<unix>,v1=<hex hmac-sha256>", with one v1 entry per secret while
// a secret is being rolled.
package stripetest

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"
)

// Sign returns a Stripe-Signature header for payload, stamped now, with one v1 signature per
// secret (in the given order). It panics without a secret.
func Sign(payload []byte, secrets ...string) string {
	return SignAt(payload, time.Now(), secrets...)
}

// SignAt is Sign with a chosen timestamp (seconds resolution, as Stripe's header has), for
// timestamps outside the tolerance.
func SignAt(payload []byte, at time.Time, secrets ...string) string {
	if len(secrets) == 0 {
		panic("stripetest: SignAt needs at least one secret")
	}
	var b strings.Builder
	for i, secret := range secrets {
		p := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
			Payload:   payload,
			Secret:    secret,
			Timestamp: at,
		})
		if i == 0 {
			b.WriteString(p.Header) // t=...,v1=...
			continue
		}
		// Stripe sends one t and several v1 entries while a secret is rolled.
		b.WriteString("," + p.Scheme + "=" + hex.EncodeToString(p.Signature))
	}
	return b.String()
}

// Event is a Stripe event to build as JSON. Zero fields get realistic defaults: Created now,
// APIVersion "2023-10-16" (stripe-go v76's), Object a customer "cus_test". ID and Type are
// written as given, so a test can build an invalid event by leaving them empty.
type Event struct {
	ID                 string
	Type               string
	Created            int64
	APIVersion         string
	Livemode           bool
	Account            string         // Connect account; omitted when ""
	Object             map[string]any // data.object
	PreviousAttributes map[string]any // data.previous_attributes; omitted when nil
	// Pad adds a metadata-like field of this many bytes to data.object, to make large events.
	Pad int
}

// JSON builds the event's JSON as Stripe lays it out (an "event" object with data.object).
func (e Event) JSON(tb testing.TB) []byte {
	tb.Helper()
	if e.Created == 0 {
		e.Created = time.Now().Unix()
	}
	if e.APIVersion == "" {
		e.APIVersion = "2023-10-16"
	}
	obj := map[string]any{"id": "cus_test", "object": "customer"}
	if e.Object != nil {
		obj = make(map[string]any, len(e.Object)+1)
		for k, v := range e.Object {
			obj[k] = v
		}
	}
	if e.Pad > 0 {
		obj["description"] = strings.Repeat("x", e.Pad)
	}
	data := map[string]any{"object": obj}
	if e.PreviousAttributes != nil {
		data["previous_attributes"] = e.PreviousAttributes
	}
	env := map[string]any{
		"id":               e.ID,
		"object":           "event",
		"api_version":      e.APIVersion,
		"created":          e.Created,
		"data":             data,
		"livemode":         e.Livemode,
		"pending_webhooks": 1,
		"request":          map[string]any{"id": nil, "idempotency_key": nil},
		"type":             e.Type,
	}
	if e.Account != "" {
		env["account"] = e.Account
	}
	b, err := json.MarshalIndent(env, "", "  ") // Stripe's bodies are indented too.
	if err != nil {
		tb.Fatalf("stripetest: marshal event %s: %v", e.ID, err)
	}
	return b
}

// Subscription is a data.object of a subscription of customer with one item of price (product
// prod_test), in the shape of API version 2023-10-16.
func Subscription(id, customer, status, price string) map[string]any {
	now := time.Now().Unix()
	return map[string]any{
		"id":                   id,
		"object":               "subscription",
		"customer":             customer,
		"status":               status,
		"cancel_at_period_end": false,
		"current_period_start": now,
		"current_period_end":   now + 30*24*3600,
		"trial_end":            nil,
		"ended_at":             nil,
		"metadata":             map[string]any{},
		"items": map[string]any{
			"object": "list",
			"data": []any{map[string]any{
				"id":     "si_" + strings.TrimPrefix(id, "sub_"),
				"object": "subscription_item",
				"price":  map[string]any{"id": price, "object": "price", "product": "prod_test"},
			}},
		},
	}
}

// Fixture returns a captured event of pkg/testdata/stripe-events (for example
// "customer.subscription.created.json") from any module of the workspace.
func Fixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(FixtureDir(tb), name))
	if err != nil {
		tb.Fatalf("stripetest: fixture: %v", err)
	}
	return b
}

// FixtureDir is the directory of the captured events.
func FixtureDir(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatalf("stripetest: cannot locate the package source")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "pkg", "testdata", "stripe-events")
}

// WithID returns raw with its top-level event id replaced by id, so one captured payload can be
// delivered as many distinct events. raw must be an event with an "id".
func WithID(tb testing.TB, raw []byte, id string) []byte {
	tb.Helper()
	var head struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &head); err != nil || head.ID == "" {
		tb.Fatalf("stripetest: WithID: payload has no event id (%v)", err)
	}
	old, err := json.Marshal(head.ID)
	if err != nil {
		tb.Fatalf("stripetest: WithID: %v", err)
	}
	repl, err := json.Marshal(id)
	if err != nil {
		tb.Fatalf("stripetest: WithID: %v", err)
	}
	// Event ids appear once in an event: at the top, as "id": "evt_...".
	return bytes.Replace(raw, old, repl, 1)
}

// Response is what a webhook endpoint answered.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Post sends payload to url with the Stripe-Signature header as Stripe does (POST, JSON,
// Stripe's user agent) and reads the whole answer. It fails the test on a transport error.
// An empty header sends no Stripe-Signature at all.
func Post(tb testing.TB, url string, payload []byte, header string) Response {
	tb.Helper()
	req, err := http.NewRequestWithContext(tb.Context(), http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		tb.Fatalf("stripetest: new request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
	if header != "" {
		req.Header.Set("Stripe-Signature", header)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("stripetest: POST %s: %v", url, err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		tb.Fatalf("stripetest: read answer of %s: %v", url, err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

// Deliver signs payload now with secrets and posts it to url: one webhook delivery.
func Deliver(tb testing.TB, url string, payload []byte, secrets ...string) Response {
	tb.Helper()
	return Post(tb, url, payload, Sign(payload, secrets...))
}
