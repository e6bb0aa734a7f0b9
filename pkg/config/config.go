// Package config loads the typed configuration of Tollgate's three programs from environment
// variables. Every default lives here (and in the README's configuration table); every error
// names the variable at fault.
package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Defaults of the contract's variables.
const (
	DefaultNATSURL           = "nats://127.0.0.1:4222"
	DefaultDatabaseURL       = "postgres://postgres@127.0.0.1:5432/tollgate?sslmode=disable"
	DefaultListenerAddr      = ":8080"
	DefaultQueryAPIAddr      = ":8081"
	DefaultProcessorAddr     = ":8082"
	DefaultWebhookTolerance  = 5 * time.Minute
	DefaultMaxBodyBytes      = 1 << 20
	DefaultPublishTimeout    = 5 * time.Second
	DefaultUserIDMetadataKey = "user_id"
	// DefaultRetainApplied is how long the stream keeps an event after the processor applied it
	// (STREAM_RETAIN_APPLIED): far longer than a standby's replication lag, so that the commits a
	// failover loses are re-applied from the stream.
	DefaultRetainApplied = 10 * time.Minute
	// DefaultCacheMaxAge is the longest the query API serves an answer from memory without
	// reading it again (QUERYAPI_CACHE_MAX_AGE): with change notifications it only bounds the
	// staleness of a notification lost while the LISTEN session stayed up.
	DefaultCacheMaxAge = 5 * time.Minute
	// DefaultCacheBytes is the query API's cache budget (QUERYAPI_CACHE_BYTES): 64 MiB.
	DefaultCacheBytes = 64 << 20
	// DefaultCacheWarm is how many of the most recently changed users and customers (each) the
	// query API reads into its cache at start (QUERYAPI_CACHE_WARM).
	DefaultCacheWarm = 20_000
	// MaxBackfillTypes is the most event types one /v1/events request may filter on (Stripe's
	// limit on types[]).
	MaxBackfillTypes = 20
	// MaxStreamReplicas is the most replicas JetStream gives a stream (STREAM_REPLICAS).
	MaxStreamReplicas = 5
)

// Listener is the configuration of the listener.
type Listener struct {
	HTTPAddr string
	NATSURL  string
	// NATSCreds is NATS_CREDS, the path of a NATS credentials file; "" when unset.
	NATSCreds        string
	WebhookSecrets   []WebhookSecret
	WebhookTolerance time.Duration
	MaxBodyBytes     int64
	// PublishTimeout bounds the wait for JetStream's acknowledgment before answering 503.
	PublishTimeout time.Duration
	// StreamReplicas is STREAM_REPLICAS: the replicas the stream is created or updated with
	// (1..5); 0 when unset, so an existing stream keeps the operator's setting.
	StreamReplicas int
}

// WebhookSecret is one entry of STRIPE_WEBHOOK_SECRETS: an endpoint's signing secret and, when
// the entry was written live:whsec_… or test:whsec_…, the one Stripe mode it may sign.
type WebhookSecret struct {
	Secret string // whsec_…
	// Mode is ModeLive or ModeTest for a bound entry, ModeAny for a bare whsec_… (it signs
	// events of either mode, as before binding existed).
	Mode string
}

// Modes of a WebhookSecret.
const (
	ModeAny  = ""
	ModeLive = "live"
	ModeTest = "test"
)

// Signs reports whether the secret may sign an event of that mode.
func (w WebhookSecret) Signs(livemode bool) bool {
	switch w.Mode {
	case ModeLive:
		return livemode
	case ModeTest:
		return !livemode
	default:
		return true
	}
}

// AdminToken is one entry of ADMIN_TOKENS: a bearer token of the admin API and console, and the
// name recorded with every change made with it (DefaultAdminName for an entry without one).
type AdminToken struct {
	Name  string
	Token string
}

// MinAdminTokenLength is the shortest admin token the processor starts with: a token guessed
// through the console's login form must be out of reach.
const MinAdminTokenLength = 16

// DefaultAdminName names the token of an ADMIN_TOKENS entry written without name:.
const DefaultAdminName = "admin"

// StripeAPI is how the processor's backfill and reconcile reach Stripe's API.
type StripeAPI struct {
	Key  string
	Base string // "" means Stripe's own
}

// Livemode is the mode of Key: true for a live key (sk_live_…, rk_live_…), false for any other
// (test keys, sk_test_… and rk_test_…, and the fakes of tests). Backfill and reconcile read and
// compare that mode's data only: Stripe answers a key with its own mode's objects.
func (s StripeAPI) Livemode() bool {
	return strings.HasPrefix(s.Key, "sk_live_") || strings.HasPrefix(s.Key, "rk_live_")
}

// Processor is the configuration of the processor.
type Processor struct {
	HTTPAddr string
	NATSURL  string
	// NATSCreds is NATS_CREDS, as in Listener.
	NATSCreds   string
	DatabaseURL string
	// StreamReplicas is STREAM_REPLICAS, as in Listener.
	StreamReplicas    int
	UserIDMetadataKey string
	PastDueGrants     bool
	PlansFile         string // "" when unset
	// Stripe is the Stripe API of backfill and reconcile; its Key is "" when STRIPE_API_KEY is unset.
	Stripe StripeAPI
	// BackfillInterval runs a backfill on a timer when positive (one processor at a time).
	BackfillInterval time.Duration
	// BackfillTypes limits the scheduled backfill to these event types (at most
	// MaxBackfillTypes, Stripe's limit); empty means every type.
	BackfillTypes []string
	// AdminTokens are the tokens of ADMIN_TOKENS, the bearer tokens of the admin API; empty turns
	// it off. Admins are the same tokens with their names.
	AdminTokens []string
	Admins      []AdminToken
	// NotifyURLs are NOTIFY_URLS, where entitlement changes are POSTed; empty turns it off.
	NotifyURLs []string
	// NotifySecret is the key of NOTIFY_SECRET (whsec_ + base64), decoded; nil when unset.
	NotifySecret []byte
	// RetainApplied is STREAM_RETAIN_APPLIED: how long an applied event stays in the stream, so
	// that a database that lost its last commits (a standby promoted under asynchronous
	// replication, a restore) gets them back from it; 0 purges at once.
	RetainApplied time.Duration
}

// QueryAPI is the configuration of the query API.
type QueryAPI struct {
	HTTPAddr    string
	DatabaseURL string
	Tokens      []string
	// Cache is how the in-process cache of answers keeps fresh and how big it grows.
	Cache QueryAPICache
	// Livemode is the Stripe mode a request without ?livemode= is answered from
	// (QUERYAPI_LIVEMODE, default true).
	Livemode bool
}

// Cache modes of the query API (QUERYAPI_CACHE_MODE).
const (
	// CacheNotify keeps an answer until a change notification (LISTEN) drops it, at most
	// MaxAge; without a LISTEN session nothing is served from memory. Needs a primary.
	CacheNotify = "notify"
	// CacheMaxAge serves an answer for at most MaxAge after it was read, with no LISTEN session:
	// for a hot standby, where LISTEN is refused. MaxAge (plus replication lag) is the staleness.
	CacheMaxAge = "max-age"
	// CacheOff reads every answer from Postgres.
	CacheOff = "off"
)

// QueryAPICache is the configuration of the query API's cache.
type QueryAPICache struct {
	Mode   string        // CacheNotify, CacheMaxAge or CacheOff
	MaxAge time.Duration // positive
	Bytes  int64         // positive: the budget of the entries' estimated size
	Warm   int           // users and customers (each) read in at start; 0 reads none
}

// LoadListener reads the listener's variables. STRIPE_WEBHOOK_SECRETS is required.
func LoadListener(getenv func(string) string) (Listener, error) {
	e := env{getenv: getenv}
	c := Listener{
		HTTPAddr:         e.str("HTTP_ADDR", DefaultListenerAddr),
		NATSURL:          e.natsURL(),
		NATSCreds:        e.natsCreds(),
		WebhookSecrets:   e.webhookSecrets(),
		WebhookTolerance: e.duration("STRIPE_WEBHOOK_TOLERANCE", DefaultWebhookTolerance),
		MaxBodyBytes:     e.positiveInt("MAX_BODY_BYTES", DefaultMaxBodyBytes),
		PublishTimeout:   e.duration("PUBLISH_TIMEOUT", DefaultPublishTimeout),
		StreamReplicas:   e.streamReplicas(),
	}
	if len(e.list("STRIPE_WEBHOOK_SECRETS")) == 0 {
		e.fail("STRIPE_WEBHOOK_SECRETS", "is required: the comma-separated whsec_… signing secrets of your Stripe endpoint")
	}
	if c.WebhookTolerance == 0 {
		e.fail("STRIPE_WEBHOOK_TOLERANCE", "must be positive, such as 5m (0 would refuse every webhook)")
	}
	if c.PublishTimeout == 0 {
		e.fail("PUBLISH_TIMEOUT", "must be positive, such as 5s (0 would answer 503 to every webhook)")
	}
	return c, e.err()
}

// adminTokens reads ADMIN_TOKENS: token or name:token entries. A name is letters, digits, '_',
// '-' and '.' (it is shown and logged); two entries may not share a token.
func (e *env) adminTokens() []AdminToken {
	var out []AdminToken
	seen := map[string]bool{}
	for i, entry := range e.list("ADMIN_TOKENS") {
		a := AdminToken{Name: DefaultAdminName, Token: entry}
		if name, token, ok := strings.Cut(entry, ":"); ok {
			a = AdminToken{Name: name, Token: token}
			if name == "" || strings.ContainsFunc(name, func(r rune) bool {
				return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' && r != '-' && r != '.'
			}) {
				// The entry is not echoed: it holds a token.
				e.fail("ADMIN_TOKENS", fmt.Sprintf("entry %d: a name (before the colon) is letters, digits, '_', '-' and '.'", i+1))
				continue
			}
		}
		if len(a.Token) < MinAdminTokenLength {
			e.fail("ADMIN_TOKENS", fmt.Sprintf("entry %d: a token must be at least %d characters (openssl rand -hex 24)", i+1, MinAdminTokenLength))
			continue
		}
		if seen[a.Token] {
			e.fail("ADMIN_TOKENS", fmt.Sprintf("entry %d repeats the token of an earlier entry", i+1))
			continue
		}
		seen[a.Token] = true
		out = append(out, a)
	}
	return out
}

// webhookSecrets reads STRIPE_WEBHOOK_SECRETS: whsec_…, live:whsec_… or test:whsec_… entries.
func (e *env) webhookSecrets() []WebhookSecret {
	var out []WebhookSecret
	for _, entry := range e.list("STRIPE_WEBHOOK_SECRETS") {
		w := WebhookSecret{Secret: entry}
		if mode, secret, ok := strings.Cut(entry, ":"); ok {
			w = WebhookSecret{Secret: secret, Mode: mode}
			if mode != ModeLive && mode != ModeTest {
				// The entry is not echoed: it holds a secret.
				e.fail("STRIPE_WEBHOOK_SECRETS", fmt.Sprintf("entry %d is bound to %q: write live:whsec_… or test:whsec_…", len(out)+1, mode))
				return nil
			}
		}
		if !strings.HasPrefix(w.Secret, "whsec_") {
			e.fail("STRIPE_WEBHOOK_SECRETS", "every secret must start with whsec_ (Stripe's endpoint signing secret), optionally bound to a mode: live:whsec_… or test:whsec_…")
			return nil
		}
		out = append(out, w)
	}
	return out
}

// LoadBackfill reads what `processor backfill` and `processor reconcile` need: NATS_URL,
// DATABASE_URL and the Stripe API, whose STRIPE_API_KEY is required here. The derivation's
// variables are not read.
func LoadBackfill(getenv func(string) string) (Processor, error) {
	e := env{getenv: getenv}
	c := Processor{
		NATSURL:        e.natsURL(),
		NATSCreds:      e.natsCreds(),
		DatabaseURL:    e.databaseURL(),
		StreamReplicas: e.streamReplicas(),
		Stripe:         e.stripeAPI(),
	}
	if c.Stripe.Key == "" {
		e.fail("STRIPE_API_KEY", "is required to read events from the Stripe API (a restricted key with read access to events and subscriptions is enough)")
	}
	return c, e.err()
}

// LoadProcessor reads the processor's variables. STRIPE_API_KEY is optional (backfill,
// reconcile and repair need it); BACKFILL_INTERVAL requires it.
func LoadProcessor(getenv func(string) string) (Processor, error) {
	e := env{getenv: getenv}
	c := Processor{
		HTTPAddr:          e.str("HTTP_ADDR", DefaultProcessorAddr),
		NATSURL:           e.natsURL(),
		NATSCreds:         e.natsCreds(),
		DatabaseURL:       e.databaseURL(),
		StreamReplicas:    e.streamReplicas(),
		UserIDMetadataKey: e.str("USER_ID_METADATA_KEY", DefaultUserIDMetadataKey),
		PastDueGrants:     e.boolean("PAST_DUE_GRANTS", true),
		PlansFile:         e.str("PLANS_FILE", ""),
		Stripe:            e.stripeAPI(),
		BackfillInterval:  e.duration("BACKFILL_INTERVAL", 0),
		BackfillTypes:     e.list("BACKFILL_TYPES"),
		Admins:            e.adminTokens(),
		NotifyURLs:        e.list("NOTIFY_URLS"),
		RetainApplied:     e.duration("STREAM_RETAIN_APPLIED", DefaultRetainApplied),
	}
	for _, a := range c.Admins {
		c.AdminTokens = append(c.AdminTokens, a.Token)
	}
	c.NotifySecret = e.notifySecret(c.NotifyURLs)
	if c.BackfillInterval > 0 && c.Stripe.Key == "" {
		e.fail("BACKFILL_INTERVAL", "needs STRIPE_API_KEY to reach the Stripe API")
	}
	if len(c.BackfillTypes) > MaxBackfillTypes {
		e.fail("BACKFILL_TYPES", fmt.Sprintf("lists %d event types; Stripe filters on at most %d", len(c.BackfillTypes), MaxBackfillTypes))
	}
	return c, e.err()
}

// LoadQueryAPI reads the query API's variables. QUERYAPI_TOKENS is required.
func LoadQueryAPI(getenv func(string) string) (QueryAPI, error) {
	e := env{getenv: getenv}
	c := QueryAPI{
		HTTPAddr:    e.str("HTTP_ADDR", DefaultQueryAPIAddr),
		DatabaseURL: e.databaseURL(),
		Tokens:      e.list("QUERYAPI_TOKENS"),
		Cache:       e.queryAPICache(),
		Livemode:    e.boolean("QUERYAPI_LIVEMODE", true),
	}
	if len(c.Tokens) == 0 {
		e.fail("QUERYAPI_TOKENS", "is required: the comma-separated bearer tokens the web app may use")
	}
	return c, e.err()
}

func (e *env) queryAPICache() QueryAPICache {
	c := QueryAPICache{
		Mode:   e.str("QUERYAPI_CACHE_MODE", CacheNotify),
		MaxAge: e.duration("QUERYAPI_CACHE_MAX_AGE", DefaultCacheMaxAge),
		Bytes:  e.positiveInt("QUERYAPI_CACHE_BYTES", DefaultCacheBytes),
		Warm:   int(e.nonNegativeInt("QUERYAPI_CACHE_WARM", DefaultCacheWarm)),
	}
	switch c.Mode {
	case CacheNotify, CacheOff:
	case CacheMaxAge:
		// Without notifications the max age is the whole staleness bound: the operator states it.
		if strings.TrimSpace(e.getenv("QUERYAPI_CACHE_MAX_AGE")) == "" {
			e.fail("QUERYAPI_CACHE_MAX_AGE", "must be set with QUERYAPI_CACHE_MODE=max-age: it is how stale an answer may be (such as 2s)")
		}
	default:
		e.fail("QUERYAPI_CACHE_MODE", fmt.Sprintf("=%q: want notify, max-age or off", c.Mode))
	}
	if c.MaxAge == 0 {
		e.fail("QUERYAPI_CACHE_MAX_AGE", "must be positive, such as 5m (QUERYAPI_CACHE_MODE=off turns the cache off)")
	}
	return c
}

// LoadDatabase reads DATABASE_URL alone, for commands that only touch Postgres.
func LoadDatabase(getenv func(string) string) (string, error) {
	e := env{getenv: getenv}
	u := e.databaseURL()
	return u, e.err()
}

type env struct {
	getenv func(string) string
	errs   []error
}

func (e *env) fail(name, msg string) {
	e.errs = append(e.errs, fmt.Errorf("%s %s", name, msg))
}

func (e *env) err() error {
	if len(e.errs) == 0 {
		return nil
	}
	return fmt.Errorf("configuration: %w", errors.Join(e.errs...))
}

func (e *env) str(name, def string) string {
	if v := strings.TrimSpace(e.getenv(name)); v != "" {
		return v
	}
	return def
}

func (e *env) list(name string) []string {
	var out []string
	for _, p := range strings.Split(e.getenv(name), ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (e *env) duration(name string, def time.Duration) time.Duration {
	v := strings.TrimSpace(e.getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		e.fail(name, fmt.Sprintf("=%q is not a duration like 5m or 30s", v))
		return def
	}
	return d
}

func (e *env) positiveInt(name string, def int64) int64 {
	v := strings.TrimSpace(e.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		e.fail(name, fmt.Sprintf("=%q is not a positive integer", v))
		return def
	}
	return n
}

func (e *env) nonNegativeInt(name string, def int64) int64 {
	v := strings.TrimSpace(e.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 1<<31 {
		e.fail(name, fmt.Sprintf("=%q is not an integer from 0 to 2147483648", v))
		return def
	}
	return n
}

func (e *env) boolean(name string, def bool) bool {
	v := strings.TrimSpace(e.getenv(name))
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.fail(name, fmt.Sprintf("=%q is not true or false", v))
		return def
	}
	return b
}

// natsCreds reads NATS_CREDS, the path of a .creds file (user JWT and nkey seed), and checks
// that it can be read: a typo fails at start, naming the variable, rather than as an
// authorization error on every reconnect.
func (e *env) natsCreds() string {
	v := e.str("NATS_CREDS", "")
	if v == "" {
		return ""
	}
	f, err := os.Open(v)
	if err != nil {
		e.fail("NATS_CREDS", fmt.Sprintf("=%q cannot be read: %v", v, err))
		return v
	}
	_ = f.Close()
	return v
}

func (e *env) natsURL() string {
	v := e.str("NATS_URL", DefaultNATSURL)
	for _, p := range strings.Split(v, ",") {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.Host == "" {
			e.fail("NATS_URL", fmt.Sprintf("=%q: each server must be a URL like nats://host:4222", v))
			break
		}
	}
	return v
}

// streamReplicas reads STREAM_REPLICAS; 0 means unset (the stream package's default 1 for a new
// stream, the operator's setting for an existing one).
func (e *env) streamReplicas() int {
	v := strings.TrimSpace(e.getenv("STREAM_REPLICAS"))
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxStreamReplicas {
		e.fail("STREAM_REPLICAS", fmt.Sprintf("=%q must be a number of replicas from 1 to %d (3 on a three-node cluster)", v, MaxStreamReplicas))
		return 0
	}
	return n
}

func (e *env) databaseURL() string {
	v := e.str("DATABASE_URL", DefaultDatabaseURL)
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		e.fail("DATABASE_URL", "must be a postgres:// URL")
	}
	return v
}

func (e *env) stripeAPI() StripeAPI {
	s := StripeAPI{Key: e.str("STRIPE_API_KEY", ""), Base: e.str("STRIPE_API_BASE", "")}
	if s.Base != "" {
		u, err := url.Parse(s.Base)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
			e.fail("STRIPE_API_BASE", fmt.Sprintf("=%q is not a URL like https://api.stripe.com or http://127.0.0.1:12111", redactURL(s.Base)))
		case u.Scheme == "http" && !isLoopback(u.Hostname()):
			// The API key travels in every request's Authorization header.
			e.fail("STRIPE_API_BASE", fmt.Sprintf("=%q is plain http to a host that is not loopback: the API key would travel in clear; use https", redactURL(s.Base)))
		}
	}
	return s
}

// notifySecret reads NOTIFY_SECRET, required with NOTIFY_URLS: "whsec_" and the base64 of the
// key (Standard Webhooks), at least 24 bytes.
func (e *env) notifySecret(urls []string) []byte {
	for _, u := range urls {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			e.fail("NOTIFY_URLS", fmt.Sprintf("lists %q, not an http(s) URL", u))
		}
	}
	v := strings.TrimSpace(e.getenv("NOTIFY_SECRET"))
	if v == "" {
		if len(urls) > 0 {
			e.fail("NOTIFY_SECRET", "is required with NOTIFY_URLS: whsec_ followed by the base64 of the signing key")
		}
		return nil
	}
	b64, ok := strings.CutPrefix(v, "whsec_")
	key, err := base64.StdEncoding.DecodeString(b64)
	if !ok || err != nil || len(key) < 24 || len(key) > 64 {
		e.fail("NOTIFY_SECRET", "must be whsec_ followed by the base64 of a key of 24 to 64 bytes")
		return nil
	}
	return key
}

// isLoopback reports whether host (a URL's Hostname) is this machine: localhost or a loopback IP.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// redactURL is raw without the password of its userinfo, for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}
