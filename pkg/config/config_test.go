package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/config"
)

func getenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadListenerDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.LoadListener(getenv(map[string]string{"STRIPE_WEBHOOK_SECRETS": "whsec_a, whsec_b ,"}))
	require.NoError(t, err)
	require.Equal(t, []config.WebhookSecret{{Secret: "whsec_a"}, {Secret: "whsec_b"}}, c.WebhookSecrets)
	require.Equal(t, ":8080", c.HTTPAddr)
	require.Equal(t, "nats://127.0.0.1:4222", c.NATSURL)
	require.Equal(t, 5*time.Minute, c.WebhookTolerance)
	require.Equal(t, int64(1048576), c.MaxBodyBytes)
}

// Entries bound to a mode sign only that mode; bare ones either, as before binding existed.
func TestLoadListenerBoundSecrets(t *testing.T) {
	t.Parallel()
	creds := filepath.Join(t.TempDir(), "listener.creds")
	require.NoError(t, os.WriteFile(creds, []byte("creds"), 0o600))
	c, err := config.LoadListener(getenv(map[string]string{"STRIPE_WEBHOOK_SECRETS": "live:whsec_l, test:whsec_t, whsec_any", "NATS_CREDS": creds}))
	require.NoError(t, err)
	require.Equal(t, []config.WebhookSecret{{Secret: "whsec_l", Mode: config.ModeLive}, {Secret: "whsec_t", Mode: config.ModeTest}, {Secret: "whsec_any"}}, c.WebhookSecrets)
	require.Equal(t, creds, c.NATSCreds)
	require.True(t, c.WebhookSecrets[0].Signs(true))
	require.False(t, c.WebhookSecrets[0].Signs(false))
	require.False(t, c.WebhookSecrets[1].Signs(true))
	require.True(t, c.WebhookSecrets[1].Signs(false))
	require.True(t, c.WebhookSecrets[2].Signs(true))
	require.True(t, c.WebhookSecrets[2].Signs(false))
}

// STRIPE_API_BASE may be plain http only to this machine (stripe-mock, a test's fake).
func TestStripeAPIBaseLoopback(t *testing.T) {
	t.Parallel()
	for _, base := range []string{"https://api.stripe.com", "http://127.0.0.1:12111", "http://localhost:12111", "http://[::1]:12111", "https://10.0.0.5"} {
		c, err := config.LoadProcessor(getenv(map[string]string{"STRIPE_API_BASE": base}))
		require.NoError(t, err, base)
		require.Equal(t, base, c.Stripe.Base)
	}
	_, err := config.LoadProcessor(getenv(map[string]string{"STRIPE_API_BASE": "http://user:pa55word@stripe.internal"}))
	require.ErrorContains(t, err, "STRIPE_API_BASE")
	require.NotContains(t, err.Error(), "pa55word")
}

func TestLoadListenerErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no secrets", map[string]string{}, "STRIPE_WEBHOOK_SECRETS is required"},
		{"not whsec", map[string]string{"STRIPE_WEBHOOK_SECRETS": "sk_test_1"}, "STRIPE_WEBHOOK_SECRETS every secret must start with whsec_"},
		{"bad tolerance", map[string]string{"STRIPE_WEBHOOK_SECRETS": "whsec_a", "STRIPE_WEBHOOK_TOLERANCE": "soon"}, "STRIPE_WEBHOOK_TOLERANCE"},
		{"zero tolerance", map[string]string{"STRIPE_WEBHOOK_SECRETS": "whsec_a", "STRIPE_WEBHOOK_TOLERANCE": "0s"}, "STRIPE_WEBHOOK_TOLERANCE must be positive"},
		{"zero publish timeout", map[string]string{"STRIPE_WEBHOOK_SECRETS": "whsec_a", "PUBLISH_TIMEOUT": "0"}, "PUBLISH_TIMEOUT must be positive"},
		{"bad body size", map[string]string{"STRIPE_WEBHOOK_SECRETS": "whsec_a", "MAX_BODY_BYTES": "-1"}, "MAX_BODY_BYTES"},
		{"bad nats", map[string]string{"STRIPE_WEBHOOK_SECRETS": "whsec_a", "NATS_URL": "nats://a:1,::"}, "NATS_URL"},
		{"bound to no mode", map[string]string{"STRIPE_WEBHOOK_SECRETS": "staging:whsec_a"}, `STRIPE_WEBHOOK_SECRETS entry 1 is bound to "staging"`},
		{"bound, not whsec", map[string]string{"STRIPE_WEBHOOK_SECRETS": "live:sk_live_1"}, "STRIPE_WEBHOOK_SECRETS every secret must start with whsec_"},
		{"unreadable creds", map[string]string{"STRIPE_WEBHOOK_SECRETS": "whsec_a", "NATS_CREDS": "/nonexistent/listener.creds"}, `NATS_CREDS ="/nonexistent/listener.creds" cannot be read`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.LoadListener(getenv(tt.env))
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestLoadProcessor(t *testing.T) {
	t.Parallel()
	c, err := config.LoadProcessor(getenv(map[string]string{}))
	require.NoError(t, err)
	require.Equal(t, ":8082", c.HTTPAddr)
	require.Equal(t, config.DefaultDatabaseURL, c.DatabaseURL)
	require.Equal(t, "user_id", c.UserIDMetadataKey)
	require.True(t, c.PastDueGrants)
	require.Empty(t, c.Stripe.Key, "STRIPE_API_KEY is optional")
	require.Zero(t, c.BackfillInterval)
	require.Empty(t, c.BackfillTypes)
	require.Equal(t, 10*time.Minute, c.RetainApplied)

	c, err = config.LoadProcessor(getenv(map[string]string{"STREAM_RETAIN_APPLIED": "0s"}))
	require.NoError(t, err)
	require.Zero(t, c.RetainApplied, "0 purges applied events at once")
	_, err = config.LoadProcessor(getenv(map[string]string{"STREAM_RETAIN_APPLIED": "ten minutes"}))
	require.ErrorContains(t, err, "STREAM_RETAIN_APPLIED")

	c, err = config.LoadProcessor(getenv(map[string]string{"STRIPE_API_KEY": "rk_test_1", "STRIPE_API_BASE": "http://127.0.0.1:12111",
		"BACKFILL_INTERVAL": "15m", "BACKFILL_TYPES": "customer.subscription.updated, customer.deleted"}))
	require.NoError(t, err)
	require.Equal(t, config.StripeAPI{Key: "rk_test_1", Base: "http://127.0.0.1:12111"}, c.Stripe)
	require.Equal(t, 15*time.Minute, c.BackfillInterval)
	require.Equal(t, []string{"customer.subscription.updated", "customer.deleted"}, c.BackfillTypes)

	_, err = config.LoadProcessor(getenv(map[string]string{"PAST_DUE_GRANTS": "maybe", "DATABASE_URL": "mysql://x"}))
	require.ErrorContains(t, err, "PAST_DUE_GRANTS")
	require.ErrorContains(t, err, "DATABASE_URL")
}

func TestLoadProcessorBackfillErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"backfill without key", map[string]string{"BACKFILL_INTERVAL": "15m"}, "BACKFILL_INTERVAL needs STRIPE_API_KEY"},
		{"bad interval", map[string]string{"STRIPE_API_KEY": "rk_test_1", "BACKFILL_INTERVAL": "hourly"}, "BACKFILL_INTERVAL"},
		{"too many backfill types", map[string]string{"BACKFILL_TYPES": strings.Repeat("customer.updated,", 21)}, "BACKFILL_TYPES lists 21 event types; Stripe filters on at most 20"},
		{"bad API base", map[string]string{"STRIPE_API_BASE": "localhost"}, "STRIPE_API_BASE"},
		{"plain http API base", map[string]string{"STRIPE_API_BASE": "http://api.stripe.com"}, "STRIPE_API_BASE =\"http://api.stripe.com\" is plain http to a host that is not loopback"},
		{"plain http to a LAN address", map[string]string{"STRIPE_API_BASE": "http://10.0.0.5:12111"}, "the API key would travel in clear"},
		{"unreadable creds", map[string]string{"NATS_CREDS": "/nonexistent/processor.creds"}, "NATS_CREDS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.LoadProcessor(getenv(tt.env))
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestLoadQueryAPI(t *testing.T) {
	t.Parallel()
	_, err := config.LoadQueryAPI(getenv(map[string]string{}))
	require.ErrorContains(t, err, "QUERYAPI_TOKENS is required")
	c, err := config.LoadQueryAPI(getenv(map[string]string{"QUERYAPI_TOKENS": "t1,t2", "HTTP_ADDR": "127.0.0.1:0"}))
	require.NoError(t, err)
	require.Equal(t, []string{"t1", "t2"}, c.Tokens)
	require.Equal(t, "127.0.0.1:0", c.HTTPAddr)
	require.Equal(t, config.QueryAPICache{Mode: config.CacheNotify, MaxAge: 5 * time.Minute, Bytes: 64 << 20, Warm: 20_000}, c.Cache)
	require.True(t, c.Livemode, "QUERYAPI_LIVEMODE defaults to true: live answers unless asked")
	c, err = config.LoadQueryAPI(getenv(map[string]string{"QUERYAPI_TOKENS": "t1", "QUERYAPI_LIVEMODE": "false"}))
	require.NoError(t, err)
	require.False(t, c.Livemode)
	_, err = config.LoadQueryAPI(getenv(map[string]string{"QUERYAPI_TOKENS": "t1", "QUERYAPI_LIVEMODE": "test"}))
	require.ErrorContains(t, err, "QUERYAPI_LIVEMODE")
}

func TestLoadQueryAPICache(t *testing.T) {
	t.Parallel()
	env := func(kv ...string) func(string) string {
		m := map[string]string{"QUERYAPI_TOKENS": "t1"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return getenv(m)
	}
	c, err := config.LoadQueryAPI(env("QUERYAPI_CACHE_MODE", "max-age", "QUERYAPI_CACHE_MAX_AGE", "2s",
		"QUERYAPI_CACHE_BYTES", "1048576", "QUERYAPI_CACHE_WARM", "0"))
	require.NoError(t, err)
	require.Equal(t, config.QueryAPICache{Mode: config.CacheMaxAge, MaxAge: 2 * time.Second, Bytes: 1 << 20}, c.Cache)

	for name, tt := range map[string]struct {
		env  []string
		want string
	}{
		"max-age without a bound": {[]string{"QUERYAPI_CACHE_MODE", "max-age"}, "QUERYAPI_CACHE_MAX_AGE must be set"},
		"unknown mode":            {[]string{"QUERYAPI_CACHE_MODE", "lru"}, "QUERYAPI_CACHE_MODE"},
		"zero max age":            {[]string{"QUERYAPI_CACHE_MAX_AGE", "0s"}, "QUERYAPI_CACHE_MAX_AGE must be positive"},
		"zero bytes":              {[]string{"QUERYAPI_CACHE_BYTES", "0"}, "QUERYAPI_CACHE_BYTES"},
		"negative warm":           {[]string{"QUERYAPI_CACHE_WARM", "-1"}, "QUERYAPI_CACHE_WARM"},
	} {
		_, err := config.LoadQueryAPI(env(tt.env...))
		require.ErrorContains(t, err, tt.want, name)
	}
}

func TestStripeKeyMode(t *testing.T) {
	t.Parallel()
	for key, live := range map[string]bool{"sk_live_1": true, "rk_live_1": true, "sk_test_1": false, "rk_test_1": false, "": false} {
		require.Equal(t, live, config.StripeAPI{Key: key}.Livemode(), key)
	}
}

func TestLoadBackfill(t *testing.T) {
	t.Parallel()
	_, err := config.LoadBackfill(getenv(map[string]string{}))
	require.ErrorContains(t, err, "STRIPE_API_KEY is required")
	c, err := config.LoadBackfill(getenv(map[string]string{"STRIPE_API_KEY": "sk_test_1", "STRIPE_API_BASE": "http://127.0.0.1:12111"}))
	require.NoError(t, err)
	require.Equal(t, "http://127.0.0.1:12111", c.Stripe.Base)
	require.Equal(t, config.DefaultDatabaseURL, c.DatabaseURL)
	require.Equal(t, config.DefaultNATSURL, c.NATSURL)
	_, err = config.LoadBackfill(getenv(map[string]string{"STRIPE_API_KEY": "sk_test_1", "DATABASE_URL": "mysql://x"}))
	require.ErrorContains(t, err, "DATABASE_URL must be a postgres:// URL")
}

func TestStreamReplicas(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		value   string
		want    int
		wantErr bool
	}{
		{"unset keeps the operator's setting", "", 0, false},
		{"one", "1", 1, false},
		{"three", " 3 ", 3, false},
		{"five", "5", 5, false},
		{"zero", "0", 0, true},
		{"six", "6", 0, true},
		{"not a number", "three", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, lerr := config.LoadListener(getenv(map[string]string{"STRIPE_WEBHOOK_SECRETS": "whsec_a", "STREAM_REPLICAS": tt.value}))
			p, perr := config.LoadProcessor(getenv(map[string]string{"STREAM_REPLICAS": tt.value}))
			if tt.wantErr {
				require.ErrorContains(t, lerr, "STREAM_REPLICAS")
				require.ErrorContains(t, perr, "STREAM_REPLICAS")
				return
			}
			require.NoError(t, lerr)
			require.NoError(t, perr)
			require.Equal(t, tt.want, l.StreamReplicas)
			require.Equal(t, tt.want, p.StreamReplicas)
		})
	}
}

func TestProcessorAdminAndNotify(t *testing.T) {
	t.Parallel()
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	c, err := config.LoadProcessor(env(map[string]string{"ADMIN_TOKENS": "a-token-of-16-chars, b-token-of-16-chars", "NOTIFY_URLS": "https://app.example/hooks",
		"NOTIFY_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}))
	require.NoError(t, err)
	require.Equal(t, []string{"a-token-of-16-chars", "b-token-of-16-chars"}, c.AdminTokens)
	require.Equal(t, []string{"https://app.example/hooks"}, c.NotifyURLs)
	require.Len(t, c.NotifySecret, 24)
	_, err = config.LoadProcessor(env(map[string]string{"NOTIFY_URLS": "https://app.example/hooks"}))
	require.ErrorContains(t, err, "NOTIFY_SECRET")
	_, err = config.LoadProcessor(env(map[string]string{"NOTIFY_URLS": "ftp://x", "NOTIFY_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}))
	require.ErrorContains(t, err, "NOTIFY_URLS")
	_, err = config.LoadProcessor(env(map[string]string{"NOTIFY_SECRET": "nope"}))
	require.ErrorContains(t, err, "NOTIFY_SECRET")
}

// ADMIN_TOKENS entries name:token give the token a name recorded with its changes; a bare
// token is "admin".
func TestProcessorAdminTokenNames(t *testing.T) {
	t.Parallel()
	c, err := config.LoadProcessor(getenv(map[string]string{"ADMIN_TOKENS": "alice:tok-alice-0123456789, tok-bare-0123456789ab"}))
	require.NoError(t, err)
	require.Equal(t, []config.AdminToken{{Name: "alice", Token: "tok-alice-0123456789"}, {Name: "admin", Token: "tok-bare-0123456789ab"}}, c.Admins)
	require.Equal(t, []string{"tok-alice-0123456789", "tok-bare-0123456789ab"}, c.AdminTokens)
	for _, bad := range []string{"al ice:tok-alice-0123456789", ":tok-alice-0123456789", "a:tok-x-0123456789abc,b:tok-x-0123456789abc", "tok-short", "alice:tok-15-chars-xx"} {
		_, err := config.LoadProcessor(getenv(map[string]string{"ADMIN_TOKENS": bad}))
		require.ErrorContains(t, err, "ADMIN_TOKENS", bad)
		require.NotContains(t, err.Error(), "tok-", "the token is never echoed")
	}
}
