// Package stripeapi reads the Stripe API (events, subscriptions, the objects repairs need)
// through stripe-go, under a request rate and with retries that honour Retry-After.
package stripeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
	"github.com/stripe/stripe-go/v76/form"
	"golang.org/x/time/rate"

	"github.com/tollgate/tollgate/pkg/backoff"
	"github.com/tollgate/tollgate/pkg/config"
)

// How backfill and reconcile read the Stripe API.
const (
	// DefaultRate is the requests per second sent at most. Stripe allows 100 read requests a
	// second in live mode and 25 in test mode; 25 leaves the live application most of its budget.
	DefaultRate = 25.0
	// PageSize is the limit of each list request, Stripe's largest.
	PageSize = 100
	// ApiMaxAttempts bounds the attempts of one request (429, 5xx and network errors are retried).
	ApiMaxAttempts = 6
	// apiBaseDelay and apiMaxDelay bound the exponential backoff between attempts.
	apiBaseDelay = 500 * time.Millisecond
	apiMaxDelay  = 30 * time.Second
	// apiMaxRetryAfter caps a Retry-After the API asks for.
	apiMaxRetryAfter = time.Minute
	// apiResponseTimeout bounds the wait for the headers of one answer.
	apiResponseTimeout = 30 * time.Second
)

// Options tune a stripeAPI. Zero values take the defaults above.
type Options struct {
	Rate        float64 // requests per second
	MaxAttempts int
	BaseDelay   time.Duration
	MaxDelay    time.Duration
	// OnRetry hears of each failed attempt that will be retried; nil ignores them.
	OnRetry func(RetryInfo)
	// Account makes every request on behalf of this connected account (the Stripe-Account
	// header); "" reads the platform's own data.
	Account string
}

// RetryInfo describes a failed attempt that is retried.
type RetryInfo struct {
	Method, Path string
	Attempt      int   // the attempt that failed, from 1
	MaxAttempts  int   // the attempts allowed
	Status       int   // its HTTP status; 0 for a network error
	Err          error // the network error, nil for a status
	Wait         time.Duration
}

func (r RetryInfo) String() string {
	what := strconv.Itoa(r.Status)
	if r.Err != nil {
		what = r.Err.Error()
	}
	return fmt.Sprintf("%s %s: %s (attempt %d of %d); retrying in %s", r.Method, r.Path, what, r.Attempt, r.MaxAttempts, r.Wait.Round(time.Millisecond))
}

// LogRetries is an OnRetry that logs each retry as a warning, msg its message.
func LogRetries(logger *slog.Logger, msg string) func(RetryInfo) {
	return func(r RetryInfo) {
		logger.Warn(msg, "method", r.Method, "path", r.Path, "status", r.Status,
			"attempt", r.Attempt, "retry_in", r.Wait.String(), "error", r.Err)
	}
}

// API reads Stripe's API with stripe-go v76: its backend (authentication, Stripe-Version,
// error decoding) and paginator, over an HTTP client whose transport keeps under a request rate
// and retries (stripe-go's own retries are off: they ignore Retry-After). It is safe for
// concurrent use; all its requests share one rate limit.
type API struct {
	backend stripe.Backend
	sc      *client.API
	key     string
	account string // the connected account every request is made for (Stripe-Account); "" for the platform
}

// New reads the API at cfg.Base (Stripe's own when "") with cfg.Key.
func New(cfg config.StripeAPI, o Options) *API {
	if o.Rate <= 0 {
		o.Rate = DefaultRate
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = ApiMaxAttempts
	}
	if o.BaseDelay <= 0 {
		o.BaseDelay = apiBaseDelay
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = apiMaxDelay
	}
	base := &http.Transport{}
	if d, ok := http.DefaultTransport.(*http.Transport); ok {
		base = d.Clone() // keep the default proxy, dial and TLS settings
	}
	base.ResponseHeaderTimeout = apiResponseTimeout
	transport := &RetryTransport{
		Next:        base,
		Limiter:     rate.NewLimiter(rate.Limit(o.Rate), 1),
		MaxAttempts: o.MaxAttempts,
		Backoff:     backoff.Policy{Base: o.BaseDelay, Max: o.MaxDelay},
		OnRetry:     o.OnRetry,
	}
	bc := &stripe.BackendConfig{
		HTTPClient:        &http.Client{Transport: transport}, // no client timeout: it would cut across retries
		MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
	}
	if cfg.Base != "" {
		bc.URL = stripe.String(cfg.Base)
	}
	backend := stripe.GetBackendWithConfig(stripe.APIBackend, bc)
	return &API{
		backend: backend,
		sc:      client.New(cfg.Key, &stripe.Backends{API: backend, Connect: backend, Uploads: backend}),
		key:     cfg.Key,
		account: o.Account,
	}
}

// Close releases the idle connections.
func (a *API) Close() {
	if b, ok := a.backend.(*stripe.BackendImplementation); ok {
		b.HTTPClient.CloseIdleConnections()
	}
}

// EventQuery selects events of GET /v1/events.
type EventQuery struct {
	// CreatedGTE and CreatedLTE bound created (Unix seconds, inclusive); 0 leaves a side open.
	CreatedGTE, CreatedLTE int64
	// Undelivered asks for events whose webhooks are still pending or failed (delivery_success=false).
	Undelivered bool
	// Types are the event types (types[]); empty means every type.
	Types []string
	// StartingAfter resumes the listing after this event id.
	StartingAfter string
}

// Events lists the events of q, newest first, fetching pages of apiPageSize as the loop goes on.
// Each item is the event's JSON exactly as the page carried it: events keep the API version they
// were created with, which stripe-go's typed Event cannot always decode (before 2017-05-25,
// "request" was a string), so pages are decoded with the items left raw, never re-marshalled.
// A failed request ends the sequence with an error wrapping stripe-go's (*stripe.Error for an
// answer of the API, a context error when ctx ended).
func (a *API) Events(ctx context.Context, q EventQuery) iter.Seq2[json.RawMessage, error] {
	params := &stripe.EventListParams{}
	params.Context = ctx
	params.Limit = stripe.Int64(PageSize)
	if q.CreatedGTE > 0 || q.CreatedLTE > 0 {
		params.CreatedRange = &stripe.RangeQueryParams{GreaterThanOrEqual: q.CreatedGTE, LesserThanOrEqual: q.CreatedLTE}
	}
	if q.Undelivered {
		params.DeliverySuccess = stripe.Bool(false)
	}
	for _, t := range q.Types {
		params.Types = append(params.Types, stripe.String(t))
	}
	if q.StartingAfter != "" {
		params.StartingAfter = stripe.String(q.StartingAfter)
	}
	if a.account != "" {
		params.SetStripeAccount(a.account)
	}
	return func(yield func(json.RawMessage, error) bool) {
		// stripe-go's paginator, as event.Client.List uses it, with raw pages.
		it := stripe.GetIter(params, func(p *stripe.Params, values *form.Values) ([]any, stripe.ListContainer, error) {
			page := &rawList{}
			err := a.backend.CallRaw(http.MethodGet, "/v1/events", a.key, values, p, page)
			items := make([]any, 0, len(page.Data))
			for _, raw := range page.Data {
				items = append(items, &rawItem{ID: IDOf(raw), Raw: raw})
			}
			return items, page, err
		})
		for it.Next() {
			item, _ := it.Current().(*rawItem) // the list decodes into *rawItem only
			if !yield(item.Raw, nil) {
				return
			}
		}
		if err := it.Err(); err != nil {
			yield(nil, fmt.Errorf("list events: %w", err))
		}
	}
}

// rawList is a page of a list with its items undecoded.
type rawList struct {
	stripe.APIResource
	stripe.ListMeta
	Data []json.RawMessage `json:"data"`
}

// rawItem is one item of a rawList; stripe-go's paginator reads ID for starting_after.
type rawItem struct {
	ID  string
	Raw json.RawMessage
}

func IDOf(raw json.RawMessage) string {
	var o struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(raw, &o) // an item without id shows up when it is parsed
	return o.ID
}

// Subscription is what reconcile compares of a subscription.
type Subscription struct {
	ID, CustomerID, Status string
}

// Subscriptions lists every subscription (status=all) of the account, or of one customer when
// customerID is not "", through stripe-go's typed client: subscriptions are rendered in the API
// version stripe-go asks for, which its types decode. Errors as for Events.
func (a *API) Subscriptions(ctx context.Context, customerID string) iter.Seq2[Subscription, error] {
	params := &stripe.SubscriptionListParams{Status: stripe.String("all")}
	params.Context = ctx
	params.Limit = stripe.Int64(PageSize)
	if customerID != "" {
		params.Customer = stripe.String(customerID)
	}
	if a.account != "" {
		params.SetStripeAccount(a.account)
	}
	return func(yield func(Subscription, error) bool) {
		it := a.sc.Subscriptions.List(params)
		for it.Next() {
			s := it.Subscription()
			sub := Subscription{ID: s.ID, Status: string(s.Status)}
			if s.Customer != nil {
				sub.CustomerID = s.Customer.ID
			}
			if !yield(sub, nil) {
				return
			}
		}
		if err := it.Err(); err != nil {
			yield(Subscription{}, fmt.Errorf("list subscriptions: %w", err))
		}
	}
}

// RetryTransport sends requests at most at limiter's rate and retries the idempotent ones (GET,
// HEAD) that got a 429, a 5xx or a network error, up to maxAttempts in all, waiting backoff's
// delay between attempts, and at least the Retry-After the answer asked for. Every attempt waits
// for the limiter. The last answer, or error, is returned as it came; a done context stops at once.
type RetryTransport struct {
	Next        http.RoundTripper
	Limiter     *rate.Limiter
	MaxAttempts int
	Backoff     backoff.Policy
	OnRetry     func(RetryInfo)
}

// RoundTrip implements http.RoundTripper.
func (t *RetryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	idempotent := (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
		(req.Body == nil || req.Body == http.NoBody || req.GetBody != nil)
	for attempt := 1; ; attempt++ {
		if err := t.Limiter.Wait(ctx); err != nil {
			return nil, fmt.Errorf("rate limit: %w", err)
		}
		r := req
		if attempt > 1 && req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			r = req.Clone(ctx)
			r.Body = body
		}
		resp, err := t.Next.RoundTrip(r)
		if !idempotent || attempt >= t.MaxAttempts || ctx.Err() != nil || !retryableResponse(resp, err) {
			return resp, err
		}
		info := RetryInfo{Method: req.Method, Path: req.URL.Path, Attempt: attempt, MaxAttempts: t.MaxAttempts, Err: err,
			Wait: t.Backoff.Delay(attempt)}
		if resp != nil {
			info.Status = resp.StatusCode
			if after, ok := RetryAfter(resp.Header.Get("Retry-After")); ok {
				info.Wait = max(info.Wait, min(after, apiMaxRetryAfter))
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
			_ = resp.Body.Close()
		}
		if t.OnRetry != nil {
			t.OnRetry(info)
		}
		if err := backoff.Sleep(ctx, info.Wait); err != nil {
			return nil, err
		}
	}
}

// retryableResponse says whether an attempt's outcome is worth another: a network error, 429 or 5xx.
func retryableResponse(resp *http.Response, err error) bool {
	if err != nil {
		return true
	}
	return resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
}

// RetryAfter reads a Retry-After header: delay seconds or an HTTP date.
func RetryAfter(v string) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(time.Until(at), 0), true
	}
	return 0, false
}
