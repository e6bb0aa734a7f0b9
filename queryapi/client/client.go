// Package client is the web app's Go client of Tollgate's query API: "is this user premium?".
// It depends on the standard library only.
//
//	c := client.New("http://queryapi:8081", token,
//		client.WithTimeout(500*time.Millisecond),
//		client.WithCache(5*time.Second, 10_000),
//		client.WithFailOpen())
//	premium, err := c.IsPremium(ctx, userID)
//
// A client asks about one scope: the server's default mode (QUERYAPI_LIVEMODE) on the platform
// unless WithLivemode or WithAccount say otherwise. Make one client per scope you ask about.
//
// A Client is safe for concurrent use; make one per process and reuse it.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Sentinel errors, matched with errors.Is. The error values themselves are *Error.
var (
	// ErrNotFound means the query API knows no entitlement for the user (404).
	ErrNotFound = errors.New("queryapi: no entitlement for this user")
	// ErrUnauthorized means the token was refused (401): a configuration error, never masked
	// by WithFailOpen.
	ErrUnauthorized = errors.New("queryapi: token refused")
)

// DefaultTimeout bounds one request when WithTimeout is not given.
const DefaultTimeout = 2 * time.Second

// maxBody bounds the answers the client reads.
const maxBody = 1 << 20

// Entitlement is the query API's answer for a user. Absent values (JSON null) are zero.
type Entitlement struct {
	UserID      string   `json:"user_id"`
	CustomerIDs []string `json:"customer_ids"`
	Livemode    bool     `json:"livemode"` // the Stripe mode the answer is of
	Account     string   `json:"account"`  // the connected account, "" for the platform
	Premium     bool     `json:"premium"`
	Status      string   `json:"status"`
	Features    []string `json:"features"`
	// Limits maps a limit name (PLANS_FILE, grants) to its value; a name absent is 0.
	Limits           map[string]int64 `json:"limits"`
	Grants           []Grant          `json:"grants"` // the user's active grants, oldest first
	Subscriptions    []Subscription   `json:"subscriptions"`
	LastEventID      string           `json:"last_event_id"`
	LastEventCreated time.Time        `json:"last_event_created"`
	UpdatedAt        time.Time        `json:"updated_at"`
	// FailOpen is true when the server's fail-open switch is on: access is granted whatever the
	// subscriptions say.
	FailOpen bool `json:"fail_open"`
	// Fallback is true when the answer did not come from the server but from the client's own
	// fail-open (WithFailOpen): the server could not be reached or answered 5xx.
	Fallback bool `json:"-"`
}

// HasFeature reports whether the entitlement grants the named feature.
func (e Entitlement) HasFeature(name string) bool {
	for _, f := range e.Features {
		if f == name {
			return true
		}
	}
	return false
}

// Limit is the value of the named limit, 0 when nothing gives it.
func (e Entitlement) Limit(name string) int64 { return e.Limits[name] }

// Grant is access an operator gave the user outside Stripe. Until is zero for a grant that lasts
// until revoked.
type Grant struct {
	ID        string           `json:"id"`
	Features  []string         `json:"features"`
	Limits    map[string]int64 `json:"limits"`
	Until     time.Time        `json:"until"`
	Reason    string           `json:"reason"`
	By        string           `json:"by"`
	CreatedAt time.Time        `json:"created_at"`
}

// Subscription is one Stripe subscription of the user. Absent times are zero.
type Subscription struct {
	ID                string    `json:"id"`
	CustomerID        string    `json:"customer_id"`
	Status            string    `json:"status"`
	PriceIDs          []string  `json:"price_ids"`
	ProductIDs        []string  `json:"product_ids"`
	CurrentPeriodEnd  time.Time `json:"current_period_end"`
	CancelAtPeriodEnd bool      `json:"cancel_at_period_end"`
	TrialEnd          time.Time `json:"trial_end"`
	EndedAt           time.Time `json:"ended_at"`
}

// Error is an error answer of the query API. errors.Is matches ErrNotFound for a 404 and
// ErrUnauthorized for a 401.
type Error struct {
	StatusCode int
	Code       string // the answer's error.code, "" when the body was not the API's JSON
	Message    string
}

func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("queryapi: %d %s", e.StatusCode, e.Message)
	}
	return fmt.Sprintf("queryapi: %d %s: %s", e.StatusCode, e.Code, e.Message)
}

// Is makes errors.Is(err, ErrNotFound) and errors.Is(err, ErrUnauthorized) work.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	}
	return false
}

// Client asks the query API. Create it with New.
type Client struct {
	base       string
	auth       string
	httpClient *http.Client
	ownsHTTP   bool
	timeout    time.Duration
	failOpen   bool
	onFallback func(userID string, err error)
	cache      *ttlCache
	livemode   *bool  // nil: the server's default
	account    string // "": the platform
}

// Option configures a Client.
type Option func(*Client)

// WithTimeout bounds each request (DefaultTimeout otherwise). With WithFailOpen, a request that
// times out answers the fallback.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) { c.timeout = d }
}

// WithHTTPClient sends requests with hc instead of the client's own (which keeps up to 64 idle
// connections to the API). hc's own Timeout, if any, also applies.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.httpClient, c.ownsHTTP = hc, false }
}

// WithCache keeps answers (including "not found") in memory for ttl, at most maxEntries of
// them, least recently used out first. An answer can be up to ttl stale; errors and fallbacks
// are not kept.
func WithCache(ttl time.Duration, maxEntries int) Option {
	return func(c *Client) {
		if ttl > 0 && maxEntries > 0 {
			c.cache = newTTLCache(ttl, maxEntries)
		}
	}
}

// WithFailOpen grants access when the query API cannot answer: on a network error, a timeout or
// a 5xx answer, Entitlement returns premium true with Fallback true (and a nil error). 401 and
// 404 are answers, not outages: they are returned as errors as usual.
func WithFailOpen() Option {
	return func(c *Client) { c.failOpen = true }
}

// WithFallbackHook calls fn with the cause each time WithFailOpen answers a fallback, to log or
// count it. fn must be safe for concurrent use.
func WithFallbackHook(fn func(userID string, err error)) Option {
	return func(c *Client) { c.onFallback = fn }
}

// WithLivemode asks about Stripe's live mode (true) or test mode (false) instead of the server's
// default (QUERYAPI_LIVEMODE): ?livemode= on every request.
func WithLivemode(live bool) Option {
	return func(c *Client) { c.livemode = &live }
}

// WithAccount asks about a Connect connected account ("acct_…") instead of the platform's own
// data: ?account= on every request. The server answers 400 for an id that is not an account's.
func WithAccount(account string) Option {
	return func(c *Client) { c.account = account }
}

// New is a client of the query API at baseURL (such as "http://queryapi:8081") that
// authenticates with token.
func New(baseURL, token string, opts ...Option) *Client {
	c := &Client{
		base:    strings.TrimRight(baseURL, "/"),
		auth:    "Bearer " + token,
		timeout: DefaultTimeout,
	}
	for _, o := range opts {
		o(c)
	}
	if c.httpClient == nil {
		t := &http.Transport{}
		if d, ok := http.DefaultTransport.(*http.Transport); ok {
			t = d.Clone() // keep the default proxy, dial and TLS settings
		}
		t.MaxIdleConns, t.MaxIdleConnsPerHost = 64, 64
		c.httpClient, c.ownsHTTP = &http.Client{Transport: t}, true
	}
	return c
}

// CloseIdleConnections closes the idle connections of the client's own transport (not of one
// given with WithHTTPClient).
func (c *Client) CloseIdleConnections() {
	if c.ownsHTTP {
		c.httpClient.CloseIdleConnections()
	}
}

// IsPremium reports whether the user has access. A user the API does not know is not premium
// (false, nil): most users never subscribed.
func (c *Client) IsPremium(ctx context.Context, userID string) (bool, error) {
	e, err := c.Entitlement(ctx, userID)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return e.Premium, nil
}

// Entitlement is the API's answer for the user. Errors: ErrNotFound, ErrUnauthorized (both as
// *Error), another *Error for other answers, a transport error, or ctx's error when ctx ends
// first. With WithFailOpen, outages answer the fallback instead (see WithFailOpen).
func (c *Client) Entitlement(ctx context.Context, userID string) (Entitlement, error) {
	if userID == "" {
		return Entitlement{}, errors.New("queryapi: empty user id")
	}
	if c.cache != nil {
		if it, ok := c.cache.get(userID); ok {
			return it.e, it.err
		}
	}
	e, err := c.fetch(ctx, userID)
	if err == nil || errors.Is(err, ErrNotFound) {
		if c.cache != nil {
			c.cache.put(userID, e, err)
		}
		return e, err
	}
	if c.failOpen && ctx.Err() == nil && outage(err) {
		if c.onFallback != nil {
			c.onFallback(userID, err)
		}
		return c.fallback(userID), nil
	}
	return Entitlement{}, err
}

// outage reports whether err means the API could not answer, as opposed to an answer.
func outage(err error) bool {
	var apiErr *Error
	if errors.As(err, &apiErr) {
		return apiErr.StatusCode >= http.StatusInternalServerError
	}
	return true // transport errors, timeouts, undecodable answers
}

// fallback is the client-side fail-open answer, shaped like the server's for an unknown user of
// the client's scope (Livemode false unless WithLivemode(true): the server's default is unknown).
func (c *Client) fallback(userID string) Entitlement {
	return Entitlement{
		UserID:        userID,
		CustomerIDs:   []string{},
		Livemode:      c.livemode != nil && *c.livemode,
		Account:       c.account,
		Premium:       true,
		Status:        "none",
		Features:      []string{"premium"},
		Limits:        map[string]int64{},
		Grants:        []Grant{},
		Subscriptions: []Subscription{},
		Fallback:      true,
	}
}

func (c *Client) fetch(ctx context.Context, userID string) (Entitlement, error) {
	e, _, err := c.get(ctx, c.userURL(userID, url.Values{}), c.timeout)
	return e, err
}

// userURL is the user endpoint of userID in the client's scope (WithLivemode, WithAccount), with
// the query parameters q on top.
func (c *Client) userURL(userID string, q url.Values) string {
	u := c.base + "/v1/users/" + url.PathEscape(userID) + "/entitlement"
	if c.livemode != nil {
		q.Set("livemode", fmt.Sprint(*c.livemode))
	}
	if c.account != "" {
		q.Set("account", c.account)
	}
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// get asks for one answer within timeout; its header comes back too.
func (c *Client) get(ctx context.Context, u string, timeout time.Duration) (Entitlement, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Entitlement{}, nil, fmt.Errorf("queryapi: %w", err)
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Accept", "application/json")
	resp, err := c.httpClient.Do(req)
	if err != nil {
		return Entitlement{}, nil, fmt.Errorf("queryapi: %w", err)
	}
	defer func() { _ = resp.Body.Close() }() // read to the end below; nothing to report
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return Entitlement{}, nil, fmt.Errorf("queryapi: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		apiErr := &Error{StatusCode: resp.StatusCode, Message: http.StatusText(resp.StatusCode)}
		var eb struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(body, &eb) == nil && eb.Error.Code != "" {
			apiErr.Code, apiErr.Message = eb.Error.Code, eb.Error.Message
		}
		return Entitlement{}, resp.Header, apiErr
	}
	var e Entitlement
	if err := json.Unmarshal(body, &e); err != nil {
		return Entitlement{}, nil, fmt.Errorf("queryapi: decode answer: %w", err)
	}
	return e, resp.Header, nil
}
