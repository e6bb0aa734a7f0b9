package load

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/tollgate/tollgate/e2e/scenario"
)

// NewClient is an HTTP client for conns concurrent callers of one host: it keeps that many idle
// connections (the default of 2 would make most requests open a new one) and never asks for
// compression.
func NewClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}
}

// Webhook is a Stripe event ready to POST: its body and the Stripe-Signature header over it.
type Webhook struct {
	EventID   string
	Body      []byte
	Signature string
}

// Sign signs events with secret now, as Stripe does (scenario.Sign). A signature stays valid
// for the listener's tolerance (5 minutes by default), so sign shortly before sending.
func Sign(events []scenario.Event, secret string) []Webhook {
	ws := make([]Webhook, len(events))
	for i, ev := range events {
		ws[i] = Webhook{EventID: ev.ID, Body: ev.Payload, Signature: scenario.Sign(ev.Payload, secret)}
	}
	return ws
}

// Answer is an HTTP status and the body that came with it.
type Answer struct {
	Status int
	Body   []byte
}

// PostWebhook POSTs w to url (the listener's /webhooks/stripe) as Stripe does. The error is a
// transport error only; any status comes back in the Answer.
func PostWebhook(ctx context.Context, c *http.Client, url string, w Webhook) (Answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(w.Body))
	if err != nil {
		return Answer{}, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Stripe-Signature", w.Signature)
	req.Header.Set("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
	return do(c, req)
}

// Get GETs url with the bearer token (none when token is empty).
func Get(ctx context.Context, c *http.Client, url, token string) (Answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Answer{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(c, req)
}

func do(c *http.Client, req *http.Request) (Answer, error) {
	resp, err := c.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return Answer{}, fmt.Errorf("%s %s: read body: %w", req.Method, req.URL.Path, err)
	}
	return Answer{Status: resp.StatusCode, Body: body}, nil
}

// Want200 turns an answer other than 200 into an error that shows the body.
func Want200(a Answer, err error) error {
	if err != nil {
		return err
	}
	if a.Status != http.StatusOK {
		return fmt.Errorf("status %d: %.200s", a.Status, a.Body)
	}
	return nil
}
