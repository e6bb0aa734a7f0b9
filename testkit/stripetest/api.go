package stripetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// API is a fake of the Stripe API that backfill, reconcile and repair read, served over real
// HTTP on loopback: the lists GET /v1/events, /v1/subscriptions and
// /v1/entitlements/active_entitlements, and the retrieval of one subscription, customer or
// Checkout Session by id (AddSubscription, AddCustomer, AddCheckoutSession; AddSubscription of
// a known id replaces it). Point STRIPE_API_BASE at URL.
//
// It follows Stripe's list semantics: the answer is {"object":"list","data":[…],"has_more":…,
// "url":…}, newest first (created descending; among objects of the same second, the one added
// later first); limit is 1 to 100, default 10; starting_after is a cursor on an object's position
// in the whole list, filters aside (an unknown id is a 400 resource_missing); created takes gt,
// gte, lt, lte or an exact value. /v1/events filters on delivery_success, type and types[] (both
// types[] and stripe-go's types[0] spellings); /v1/subscriptions on status (all, ended, one
// status, or by default everything but canceled) and customer. A parameter Stripe does not know
// is a 400, as Stripe answers. Every request needs "Authorization: Bearer <Key>" (else 401).
// Errors have Stripe's shape {"error":{"type":…,"code":…,"message":…}}.
//
// Faults sprinkles 429s and 500s deterministically into the answers. API is safe for concurrent
// use; objects may be added while clients list.
type API struct {
	// URL is the base URL, without /v1.
	URL string
	// Key is the only API key accepted.
	Key string

	faults Faults
	// knownEvent and knownSubscription match the parameters of each list endpoint.
	knownEvent, knownSubscription *regexp.Regexp

	mu     sync.Mutex
	events []apiObject // in the order added
	subs   []apiObject
	// objects are customers and Checkout Sessions by path (GET /v1/customers/{id}, ...).
	objects map[string]json.RawMessage
	// entitlements are the active entitlements by customer.
	entitlements map[string][]apiObject
	served       int // requests answered so far, faults included
	log          []APIRequest
}

// Faults choose which requests fail. Requests are counted from 1 over both endpoints, retries
// included, so a retried request is a new one.
type Faults struct {
	// Every429 answers every n-th request with 429 and a Retry-After of RetryAfter seconds (0: never).
	Every429 int
	// Every500 answers every n-th request with a 500 api_error (0: never). Every429 wins when both match.
	Every500 int
	// RetryAfter is the Retry-After of a 429, in seconds. Default 1.
	RetryAfter int
	// DownAfter answers every request after the n-th with DownStatus, as an outage (500) or a
	// revoked key (401) would (0: never).
	DownAfter  int
	DownStatus int // default 500
	// Delay is added to every answer, to make a listing take time.
	Delay time.Duration
}

// APIRequest is one request the fake answered.
type APIRequest struct {
	Method string
	Path   string
	Query  url.Values
	// Account is the Stripe-Account header: the connected account the request was made for.
	Account string
	// Version and Context are the Stripe-Version and Stripe-Context (the v2 API's account) headers.
	Version, Context string
	Status           int
	At               time.Time
}

type apiObject struct {
	id       string
	created  int64
	raw      json.RawMessage
	typ      string // event type
	customer string // subscription's customer
	// customerAccount is a subscription's Accounts v2 customer_account.
	customerAccount string
	status          string // subscription's status
	// delivered is an event's delivery_success: false while webhooks are pending or failed.
	delivered bool
	// account is the connected account whose lists hold it ("" for the platform's).
	account string
}

// NewAPI serves a fake Stripe API accepting key, until the test ends.
func NewAPI(tb testing.TB, key string, faults Faults) *API {
	tb.Helper()
	if faults.RetryAfter == 0 {
		faults.RetryAfter = 1
	}
	if faults.DownStatus == 0 {
		faults.DownStatus = http.StatusInternalServerError
	}
	a := &API{Key: key, faults: faults,
		knownEvent: regexp.MustCompile(eventParams), knownSubscription: regexp.MustCompile(subscriptionParams)}
	srv := httptest.NewServer(http.HandlerFunc(a.serve))
	tb.Cleanup(srv.Close)
	a.URL = srv.URL
	return a
}

// AddEvent adds an event (its JSON as Event.JSON builds it) to the account's event list;
// delivered is its delivery_success. It returns the event id.
func (a *API) AddEvent(tb testing.TB, raw []byte, delivered bool) string {
	tb.Helper()
	return a.AddAccountEvent(tb, "", raw, delivered)
}

// AddAccountEvent is AddEvent for the event list of a connected account: requests with the
// header Stripe-Account: account list it, and only they ("" is the platform's list).
func (a *API) AddAccountEvent(tb testing.TB, account string, raw []byte, delivered bool) string {
	tb.Helper()
	var ev struct {
		ID      string `json:"id"`
		Type    string `json:"type"`
		Created int64  `json:"created"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil || ev.ID == "" || ev.Created == 0 {
		tb.Fatalf("stripetest: AddEvent: not an event with id and created (%v)", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, apiObject{id: ev.ID, created: ev.Created, raw: raw, typ: ev.Type, delivered: delivered, account: account})
	return ev.ID
}

// AddSubscription adds a subscription object (such as Subscription builds) created at created.
func (a *API) AddSubscription(tb testing.TB, obj map[string]any, created int64) {
	tb.Helper()
	a.AddSubscriptionFor(tb, "", obj, created)
}

// AddSubscriptionFor is AddSubscription for a connected account's list (Stripe-Account: account).
func (a *API) AddSubscriptionFor(tb testing.TB, account string, obj map[string]any, created int64) {
	tb.Helper()
	obj = cloneMap(obj)
	obj["created"] = created
	raw, err := json.MarshalIndent(obj, "", "  ")
	if err != nil {
		tb.Fatalf("stripetest: AddSubscription: %v", err)
	}
	id, _ := obj["id"].(string)
	customer, _ := obj["customer"].(string)
	customerAccount, _ := obj["customer_account"].(string)
	status, _ := obj["status"].(string)
	if id == "" || (customer == "" && customerAccount == "") || status == "" {
		tb.Fatalf("stripetest: AddSubscription: the object needs an id, a customer (or customer_account) and a status")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	o := apiObject{id: id, created: created, raw: raw, customer: customer, customerAccount: customerAccount, status: status, account: account}
	if i := slices.IndexFunc(a.subs, func(s apiObject) bool { return s.id == id && s.account == account }); i >= 0 {
		a.subs[i] = o // the subscription changed: Stripe has one state of each
		return
	}
	a.subs = append(a.subs, o)
}

// Requests returns the requests answered so far, in order.
func (a *API) Requests() []APIRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.log)
}

// Served is the number of requests answered so far, faults included.
func (a *API) Served() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.served
}

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	if a.faults.Delay > 0 {
		select {
		case <-time.After(a.faults.Delay):
		case <-r.Context().Done():
			return
		}
	}
	status, body, header := a.answer(r)
	for k, v := range header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", fmt.Sprintf("req_fake_%d", time.Now().UnixNano()))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// answer decides one request under the lock, so the list and the fault counter are consistent.
func (a *API) answer(r *http.Request) (int, []byte, http.Header) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.served++
	n := a.served
	status, body, header := a.route(r, n)
	a.log = append(a.log, APIRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Account: r.Header.Get("Stripe-Account"),
		Version: r.Header.Get("Stripe-Version"), Context: r.Header.Get("Stripe-Context"), Status: status, At: time.Now()})
	return status, body, header
}

func (a *API) route(r *http.Request, n int) (int, []byte, http.Header) {
	if r.Header.Get("Authorization") != "Bearer "+a.Key {
		return apiError(http.StatusUnauthorized, "invalid_request_error", "",
			"Invalid API Key provided: "+redact(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")))
	}
	if f := a.faults.Every429; f > 0 && n%f == 0 {
		s, b, _ := apiError(http.StatusTooManyRequests, "invalid_request_error", "rate_limit",
			"Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.")
		return s, b, http.Header{"Retry-After": {strconv.Itoa(a.faults.RetryAfter)}}
	}
	if d := a.faults.DownAfter; d > 0 && n > d {
		if a.faults.DownStatus == http.StatusUnauthorized {
			return apiError(http.StatusUnauthorized, "invalid_request_error", "", "This API key was revoked.")
		}
		return apiError(a.faults.DownStatus, "api_error", "", "An unknown error occurred")
	}
	if f := a.faults.Every500; f > 0 && n%f == 0 {
		return apiError(http.StatusInternalServerError, "api_error", "", "An unknown error occurred")
	}
	if r.Method != http.MethodGet {
		return apiError(http.StatusMethodNotAllowed, "invalid_request_error", "", "the fake serves GET only")
	}
	q := r.URL.Query()
	account := r.Header.Get("Stripe-Account")
	switch r.URL.Path {
	case "/v1/events":
		return a.list(q, "/v1/events", "event", a.events, a.knownEvent, func(o apiObject) (bool, string) {
			if o.account != account {
				return false, ""
			}
			return eventMatches(q, o)
		})
	case "/v1/subscriptions":
		return a.list(q, "/v1/subscriptions", "subscription", a.subs, a.knownSubscription, func(o apiObject) (bool, string) {
			if o.account != account {
				return false, ""
			}
			return subscriptionMatches(q, o)
		})
	case "/v1/entitlements/active_entitlements":
		return a.activeEntitlements(q)
	}
	switch p := r.URL.Path; {
	case strings.HasPrefix(p, "/v1/subscriptions/"), strings.HasPrefix(p, "/v1/customers/"), strings.HasPrefix(p, "/v1/checkout/sessions/"),
		strings.HasPrefix(p, "/v2/core/events/"):
		return a.retrieve(p)
	default:
		return apiError(http.StatusNotFound, "invalid_request_error", "", "Unrecognized request URL (GET: "+r.URL.Path+").")
	}
}

// The parameters each list endpoint knows (Stripe's, of those the fake may see).
const (
	eventParams        = `^(limit|starting_after|ending_before|created(\[(gt|gte|lt|lte)\])?|delivery_success|type|types\[\d*\]|expand\[\d*\])$`
	subscriptionParams = `^(limit|starting_after|ending_before|created(\[(gt|gte|lt|lte)\])?|status|customer|customer_account|price|plan|collection_method|test_clock|expand\[\d*\])$`
)

// list answers a list request over objs (in the order added) with Stripe's pagination. match
// says whether an object passes the filters, or why the filters are invalid.
func (a *API) list(q url.Values, path, noun string, objs []apiObject, known *regexp.Regexp, match func(apiObject) (bool, string)) (int, []byte, http.Header) {
	for k := range q {
		if !known.MatchString(k) {
			return apiError(http.StatusBadRequest, "invalid_request_error", "parameter_unknown", "Received unknown parameter: "+k)
		}
	}
	if q.Has("ending_before") {
		return apiError(http.StatusBadRequest, "invalid_request_error", "", "the fake does not page backwards (ending_before)")
	}
	limit := 10
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return apiError(http.StatusBadRequest, "invalid_request_error", "parameter_invalid_integer",
				"Invalid integer: "+v+" (limit must be between 1 and 100)")
		}
		limit = n
	}
	if _, invalid := match(apiObject{}); invalid != "" { // the filters' validity depends on no object
		return apiError(http.StatusBadRequest, "invalid_request_error", "parameter_invalid", invalid)
	}
	ordered := newestFirst(objs)
	start := 0
	if after := q.Get("starting_after"); after != "" {
		i := slices.IndexFunc(ordered, func(o apiObject) bool { return o.id == after })
		if i < 0 {
			return apiError(http.StatusBadRequest, "invalid_request_error", "resource_missing", fmt.Sprintf("No such %s: '%s'", noun, after))
		}
		start = i + 1
	}
	var page []json.RawMessage
	hasMore := false
	for _, o := range ordered[start:] {
		if ok, _ := match(o); !ok {
			continue
		}
		if len(page) == limit {
			hasMore = true
			break
		}
		page = append(page, o.raw)
	}
	var b bytes.Buffer
	b.WriteString("{\n  \"object\": \"list\",\n  \"data\": [")
	for i, raw := range page {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n")
		b.Write(raw)
	}
	fmt.Fprintf(&b, "\n  ],\n  \"has_more\": %t,\n  \"url\": %q\n}", hasMore, path)
	return http.StatusOK, b.Bytes(), nil
}

// newestFirst orders by created descending; of the same second, the one added later comes first.
func newestFirst(objs []apiObject) []apiObject {
	out := slices.Clone(objs)
	slices.Reverse(out)
	slices.SortStableFunc(out, func(x, y apiObject) int {
		switch {
		case x.created > y.created:
			return -1
		case x.created < y.created:
			return 1
		}
		return 0
	})
	return out
}

// eventMatches says whether the event passes the filters of q, or why they are invalid. It
// checks every filter whatever the outcome, so list can validate q against a zero object.
func eventMatches(q url.Values, o apiObject) (bool, string) {
	ok, invalid := createdMatches(q, o.created)
	if invalid != "" {
		return false, invalid
	}
	if v := q.Get("delivery_success"); v != "" {
		want, err := strconv.ParseBool(v)
		if err != nil {
			return false, "Invalid boolean: " + v
		}
		ok = ok && o.delivered == want
	}
	var types []string
	for k, vs := range q {
		if strings.HasPrefix(k, "types[") {
			types = append(types, vs...)
		}
	}
	if len(types) > 20 {
		return false, fmt.Sprintf("Invalid array: types may hold at most 20 event types, got %d", len(types))
	}
	if t := q.Get("type"); t != "" {
		if len(types) > 0 {
			return false, "You may pass either type or types, but not both."
		}
		types = []string{t}
	}
	if len(types) > 0 {
		ok = ok && slices.ContainsFunc(types, func(t string) bool { return typeMatches(t, o.typ) })
	}
	return ok, ""
}

// typeMatches matches an event type against a filter that may end in a * wildcard.
func typeMatches(filter, typ string) bool {
	if p, ok := strings.CutSuffix(filter, "*"); ok {
		return strings.HasPrefix(typ, p)
	}
	return filter == typ
}

// subscriptionMatches is eventMatches for a subscription.
func subscriptionMatches(q url.Values, o apiObject) (bool, string) {
	ok, invalid := createdMatches(q, o.created)
	if invalid != "" {
		return false, invalid
	}
	if c := q.Get("customer"); c != "" {
		ok = ok && o.customer == c
	}
	if c := q.Get("customer_account"); c != "" {
		ok = ok && o.customerAccount == c
	}
	switch s := q.Get("status"); s {
	case "all":
	case "":
		ok = ok && o.status != "canceled"
	case "ended":
		ok = ok && (o.status == "canceled" || o.status == "incomplete_expired")
	case "active", "past_due", "unpaid", "canceled", "incomplete", "incomplete_expired", "trialing", "paused":
		ok = ok && o.status == s
	default:
		return false, "Invalid status: must be one of active, all, canceled, ended, incomplete, incomplete_expired, past_due, paused, trialing, or unpaid"
	}
	return ok, ""
}

// createdMatches applies the created filters, or says why one is invalid.
func createdMatches(q url.Values, created int64) (bool, string) {
	ok := true
	for _, f := range []struct {
		key string
		ok  func(created, bound int64) bool
	}{
		{"created", func(c, b int64) bool { return c == b }},
		{"created[gt]", func(c, b int64) bool { return c > b }},
		{"created[gte]", func(c, b int64) bool { return c >= b }},
		{"created[lt]", func(c, b int64) bool { return c < b }},
		{"created[lte]", func(c, b int64) bool { return c <= b }},
	} {
		v := q.Get(f.key)
		if v == "" {
			continue
		}
		bound, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return false, "Invalid integer: " + v
		}
		ok = ok && f.ok(created, bound)
	}
	return ok, ""
}

func apiError(status int, typ, code, message string) (int, []byte, http.Header) {
	e := map[string]any{"type": typ, "message": message}
	if code != "" {
		e["code"] = code
	}
	b, _ := json.MarshalIndent(map[string]any{"error": e}, "", "  ")
	return status, b, nil
}

func redact(key string) string {
	if len(key) <= 8 {
		return "***"
	}
	return key[:8] + strings.Repeat("*", 4) + key[len(key)-4:]
}

func cloneMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}
