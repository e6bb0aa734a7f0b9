package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/catalogue"
	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/failopen"
	"github.com/tollgate/tollgate/pkg/scope"
)

// post sends a POST with a JSON body through the real router; token "" sends no Authorization.
func (b *bundle) post(t *testing.T, path, body, token string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return serveRequest(b.srv, req)
}

// flag evaluates one flag for the context (a JSON object) and decodes the answer, which must
// have status want and be JSON.
func (b *bundle) flag(t *testing.T, key, context string, want int) map[string]any {
	t.Helper()
	rec := b.post(t, "/ofrep/v1/evaluate/flags/"+key, `{"context":`+context+`}`, testToken)
	require.Equal(t, want, rec.Code, rec.Body.String())
	require.Equal(t, "application/json", strings.Split(rec.Header().Get("Content-Type"), ";")[0])
	var m map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &m), rec.Body.String())
	return m
}

// writeCatalogue writes the plans' names and waits until the instance has read them.
func (b *bundle) writeCatalogue(t *testing.T, entries ...catalogue.Entry) {
	t.Helper()
	require.NoError(t, catalogue.Write(context.Background(), b.db.Pool, catalogue.SourcePlans, entries))
	require.Eventually(t, func() bool {
		c, ok := b.app.flags.current()
		if !ok || c.Len() != len(entries) {
			return false
		}
		for _, e := range entries {
			if k, _ := c.Kind(e.Name); k != e.Kind {
				return false
			}
		}
		return true
	}, 5*time.Second, 5*time.Millisecond, "the instance did not read the catalogue")
}

// proCustomer is premiumCustomer with the features a plan gives: pro and premium.
func proCustomer() entitlement.Customer {
	c := premiumCustomer()
	c.Features = []string{"premium", "pro"}
	c.Limits = map[string]int64{"projects": 10}
	return c
}

func ofrepSetup(t *testing.T) *bundle {
	t.Helper()
	b := setup(t)
	b.waitListening(t)
	b.writeCatalogue(t, append(catalogue.Features("pro", "export"), catalogue.Limits("seats", "projects")...)...)
	b.saveSettled(t, proCustomer())
	return b
}

// Each kind of flag, for a user with an answer: the user's value, TARGETING_MATCH, and the
// metadata of the answer it comes from.
func TestOFREPEvaluatesEveryFlagKind(t *testing.T) {
	t.Parallel()
	b := ofrepSetup(t)
	user := `{"targetingKey":"u_42"}`
	m := b.flag(t, "premium", user, http.StatusOK)
	updated, ok := m["metadata"].(map[string]any)["updated_at"].(string)
	require.True(t, ok, m)
	_, err := time.Parse(time.RFC3339Nano, updated)
	require.NoError(t, err)
	meta := map[string]any{"livemode": false, "account": "", "fail_open": false, "last_event_id": "evt_9", "updated_at": updated}
	require.Equal(t, map[string]any{"key": "premium", "value": true, "reason": "TARGETING_MATCH", "variant": "true", "metadata": meta}, m)

	for _, tc := range []struct {
		key     string
		value   any
		variant string
	}{
		{"status", "active", "active"},
		{"pro", true, "true"},           // a feature of the user's
		{"export", false, "false"},      // a feature of the catalogue the user does not have
		{"seats", float64(0), "0"},      // a limit the user has none of
		{"projects", float64(10), "10"}, // a limit the user's plan gives
		{"pr%6f", true, "true"},         // an escaped key is its unescaped name
	} {
		want := map[string]any{"key": strings.ReplaceAll(tc.key, "%6f", "o"), "value": tc.value, "reason": "TARGETING_MATCH", "variant": tc.variant, "metadata": meta}
		require.Equal(t, want, b.flag(t, tc.key, user, http.StatusOK), tc.key)
	}

	require.Equal(t, map[string]any{"key": "exprot", "errorCode": "FLAG_NOT_FOUND",
		"errorDetails": `no flag "exprot": the flags are premium, status, and the feature and limit names of PLANS_FILE and of grants`},
		b.flag(t, "exprot", user, http.StatusNotFound))
}

// A user without an answer in the scope gets the empty answer's values with reason DEFAULT; the
// scope is the context's livemode and account, as /v1's parameters choose it.
func TestOFREPUnknownUserAndScopes(t *testing.T) {
	t.Parallel()
	b := ofrepSetup(t)
	for name, ctx := range map[string]string{
		"unknown user":        `{"targetingKey":"u_nobody"}`,
		"live mode":           `{"targetingKey":"u_42","livemode":true}`,
		"a connected account": `{"targetingKey":"u_42","account":"acct_1"}`,
	} {
		live := strings.Contains(ctx, "livemode")
		account := ""
		if strings.Contains(ctx, "acct_1") {
			account = "acct_1"
		}
		meta := map[string]any{"livemode": live, "account": account, "fail_open": false}
		for key, value := range map[string]any{"premium": false, "status": "none", "pro": false, "seats": float64(0)} {
			m := b.flag(t, key, ctx, http.StatusOK)
			require.Equal(t, value, m["value"], "%s: %s", name, key)
			require.Equal(t, "DEFAULT", m["reason"], "%s: %s", name, key)
			require.Equal(t, meta, m["metadata"], "%s: %s", name, key)
		}
	}
	// The platform's account may be named "" or null, like the metadata names it.
	for _, ctx := range []string{`{"targetingKey":"u_42","account":""}`, `{"targetingKey":"u_42","account":null,"livemode":null}`, `{"targetingKey":"u_42","plan":"x"}`} {
		require.Equal(t, "TARGETING_MATCH", b.flag(t, "premium", ctx, http.StatusOK)["reason"], ctx)
	}
	// A feature only the user's answer names (the catalogue does not hold it yet) is a flag.
	c := proCustomer()
	c.Scope, c.Features = scope.Scope{Livemode: true}, []string{"beta", "premium"}
	b.saveSettled(t, c)
	require.Equal(t, true, b.flag(t, "beta", `{"targetingKey":"u_42","livemode":true}`, http.StatusOK)["value"])
	require.Equal(t, "FLAG_NOT_FOUND", b.flag(t, "beta", `{"targetingKey":"u_42"}`, http.StatusNotFound)["errorCode"])
}

// Every request the protocol calls bad is 400 with OFREP's error code and why; a single flag's
// answer names the key, the bulk answer has none.
func TestOFREPRefusesBadContexts(t *testing.T) {
	t.Parallel()
	b := ofrepSetup(t)
	for _, tc := range []struct {
		name, body, code, details string
	}{
		{"no body", ``, "PARSE_ERROR", "JSON object"},
		{"not JSON", `{"context":`, "PARSE_ERROR", "JSON object"},
		{"an array", `[]`, "PARSE_ERROR", "JSON object"},
		{"no context", `{}`, "TARGETING_KEY_MISSING", "targetingKey"},
		{"context not an object", `{"context":"u_42"}`, "INVALID_CONTEXT", "context must be an object"},
		{"no targetingKey", `{"context":{"livemode":true}}`, "TARGETING_KEY_MISSING", "targetingKey"},
		{"null targetingKey", `{"context":{"targetingKey":null}}`, "TARGETING_KEY_MISSING", "targetingKey"},
		{"empty targetingKey", `{"context":{"targetingKey":""}}`, "TARGETING_KEY_MISSING", "targetingKey"},
		{"targetingKey a number", `{"context":{"targetingKey":42}}`, "INVALID_CONTEXT", "targetingKey must be a string"},
		{"targetingKey too long", `{"context":{"targetingKey":"` + strings.Repeat("u", 256) + `"}}`, "INVALID_CONTEXT", "longer than 255"},
		{"targetingKey with a control character", `{"context":{"targetingKey":"u\n42"}}`, "INVALID_CONTEXT", "control characters"},
		{"livemode a string", `{"context":{"targetingKey":"u_42","livemode":"true"}}`, "INVALID_CONTEXT", "livemode must be a boolean"},
		{"account a customer", `{"context":{"targetingKey":"u_42","account":"cus_1"}}`, "INVALID_CONTEXT", "account must be a connected account id"},
		{"account a number", `{"context":{"targetingKey":"u_42","account":1}}`, "INVALID_CONTEXT", "account must be a string"},
		{"too large", `{"context":{"targetingKey":"u_42","x":"` + strings.Repeat("x", maxOFREPBody) + `"}}`, "PARSE_ERROR", "larger than"},
	} {
		for _, path := range []string{"/ofrep/v1/evaluate/flags/premium", "/ofrep/v1/evaluate/flags"} {
			rec := b.post(t, path, tc.body, testToken)
			require.Equal(t, http.StatusBadRequest, rec.Code, "%s %s: %s", tc.name, path, rec.Body.String())
			var m map[string]any
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &m), tc.name)
			require.Equal(t, tc.code, m["errorCode"], "%s %s", tc.name, path)
			require.Contains(t, m["errorDetails"], tc.details, "%s %s", tc.name, path)
			if strings.HasSuffix(path, "premium") {
				require.Equal(t, "premium", m["key"], tc.name)
			} else {
				require.NotContains(t, m, "key", tc.name)
			}
		}
	}
	// The same bearer tokens as /v1.
	for _, path := range []string{"/ofrep/v1/evaluate/flags/premium", "/ofrep/v1/evaluate/flags"} {
		for _, token := range []string{"", "wrong"} {
			rec := b.post(t, path, `{"context":{"targetingKey":"u_42"}}`, token)
			require.Equal(t, http.StatusUnauthorized, rec.Code, path)
			require.JSONEq(t, `{"error":{"code":"unauthorized","message":"a valid Authorization: Bearer token is required"}}`, rec.Body.String())
		}
		rec := b.get(t, path, testToken)
		require.Equal(t, http.StatusMethodNotAllowed, rec.Code, path)
		require.Contains(t, rec.Header().Get("Allow"), http.MethodPost, path)
	}
}

// While fail-open is on, premium and every boolean flag are true with reason STATIC, for known
// and unknown users alike; the other flags keep the real data; a typo is still not a flag.
func TestOFREPFailOpen(t *testing.T) {
	t.Parallel()
	b := ofrepSetup(t)
	_, err := failopen.Set(context.Background(), b.db.Pool, true)
	require.NoError(t, err)
	require.Eventually(t, b.app.sw.On, 2*time.Second, 5*time.Millisecond)
	for _, user := range []string{"u_42", "u_nobody"} {
		ctx := `{"targetingKey":"` + user + `"}`
		for key, value := range map[string]any{"premium": true, "pro": true, "export": true} {
			m := b.flag(t, key, ctx, http.StatusOK)
			require.Equal(t, value, m["value"], "%s %s", user, key)
			require.Equal(t, "true", m["variant"], "%s %s", user, key)
			require.Equal(t, "STATIC", m["reason"], "%s %s", user, key)
			require.Equal(t, true, m["metadata"].(map[string]any)["fail_open"], "%s %s", user, key)
		}
		status := map[string]string{"u_42": "active", "u_nobody": "none"}[user]
		require.Equal(t, status, b.flag(t, "status", ctx, http.StatusOK)["value"], user)
		require.Equal(t, "0", b.flag(t, "seats", ctx, http.StatusOK)["variant"], user)
		require.Equal(t, "FLAG_NOT_FOUND", b.flag(t, "exprot", ctx, http.StatusNotFound)["errorCode"], user)
	}
	m := b.flag(t, "premium", `{"targetingKey":"u_42"}`, http.StatusOK)
	require.Equal(t, "evt_9", m["metadata"].(map[string]any)["last_event_id"], "the real data behind the grant")
}

// The bulk answer lists every flag with an ETag; If-None-Match with it is 304 until the answer
// changes; a change is seen on the next evaluation, single or bulk.
func TestOFREPBulkAndChanges(t *testing.T) {
	t.Parallel()
	b := ofrepSetup(t)
	const body = `{"context":{"targetingKey":"u_42"}}`
	bulk := func(headers ...string) *httptest.ResponseRecorder {
		return b.post(t, "/ofrep/v1/evaluate/flags", body, testToken, headers...)
	}
	rec := bulk()
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	etag := rec.Header().Get("ETag")
	require.Regexp(t, `^"[0-9a-f]{16}"$`, etag)
	var got struct {
		Flags []map[string]any `json:"flags"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
	var typed bulkEvaluation
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &typed))
	require.Len(t, typed.Flags, len(got.Flags))
	var keys []string
	values := map[string]any{}
	for _, f := range got.Flags {
		keys = append(keys, f["key"].(string))
		values[f["key"].(string)] = f["value"]
		require.Equal(t, "TARGETING_MATCH", f["reason"])
		single := b.flag(t, f["key"].(string), `{"targetingKey":"u_42"}`, http.StatusOK)
		require.Equal(t, single, f, "the bulk answer's flag is the single answer")
	}
	require.Equal(t, []string{"premium", "status", "export", "pro", "projects", "seats"}, keys)
	require.Equal(t, map[string]any{"premium": true, "status": "active", "export": false, "pro": true, "projects": float64(10), "seats": float64(0)}, values)

	for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
		rec = bulk("If-None-Match", inm)
		require.Equal(t, http.StatusNotModified, rec.Code, inm)
		require.Empty(t, rec.Body.String())
		require.Equal(t, etag, rec.Header().Get("ETag"))
	}
	require.Equal(t, http.StatusOK, bulk("If-None-Match", `"other"`).Code)

	// The subscription ends: the next evaluation sees it, the ETag changes.
	c := proCustomer()
	c.Premium, c.Status, c.Features, c.LastEventID = false, "canceled", []string{}, "evt_10"
	c.Subscriptions[0].Status = "canceled"
	b.saveSettled(t, c)
	require.Equal(t, false, b.flag(t, "premium", `{"targetingKey":"u_42"}`, http.StatusOK)["value"])
	require.Equal(t, "canceled", b.flag(t, "status", `{"targetingKey":"u_42"}`, http.StatusOK)["value"])
	rec = bulk("If-None-Match", etag)
	require.Equal(t, http.StatusOK, rec.Code)
	require.NotEqual(t, etag, rec.Header().Get("ETag"))

	// A new name in the catalogue is a flag at once, in the bulk answer too.
	b.writeCatalogue(t, append(catalogue.Features("pro", "export", "sso"), catalogue.Limits("seats")...)...)
	require.Equal(t, false, b.flag(t, "sso", `{"targetingKey":"u_42"}`, http.StatusOK)["value"])
	require.Contains(t, bulk().Body.String(), `"key":"sso"`)
}

// A read model that cannot be read is OFREP's one server error: 500 with errorDetails (and, so
// that providers report it, the key and GENERAL); the cause is logged, not answered.
func TestOFREPServerError(t *testing.T) {
	t.Parallel()
	b := startInstance(t, nil, "postgres://postgres@127.0.0.1:1/nowhere?connect_timeout=1",
		func(o *options) { o.dbTimeout = 100 * time.Millisecond })
	m := b.flag(t, "premium", `{"targetingKey":"u_42"}`, http.StatusInternalServerError)
	require.Equal(t, "premium", m["key"])
	require.Equal(t, "GENERAL", m["errorCode"])
	require.NotEmpty(t, m["errorDetails"])
	rec := b.post(t, "/ofrep/v1/evaluate/flags", `{"context":{"targetingKey":"u_42"}}`, testToken)
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	require.NotContains(t, rec.Body.String(), `"key"`)
	require.Contains(t, rec.Body.String(), `"errorDetails"`)
}

// appendEvaluation writes what encoding/json writes for the same evaluation.
func TestAppendEvaluation(t *testing.T) {
	t.Parallel()
	meta := flagMetadata{Livemode: true, Account: "acct_1", FailOpen: true, LastEventID: "evt_9", UpdatedAt: "2026-11-22T10:00:00.123Z"}
	for _, ev := range []flagEvaluation{
		{Key: "premium", Value: true, Reason: reasonTargetingMatch, Variant: "true", Metadata: meta},
		{Key: "status", Value: "past_due", Reason: reasonDefault, Variant: "past_due", Metadata: flagMetadata{}},
		{Key: "seats", Value: int64(-12345678901), Reason: reasonStatic, Variant: "-12345678901", Metadata: meta},
		{Key: "a\"b\\c\n\r\t\x01\x1f<>&\u2028\u2029é😀\xff", Value: "\x00", Reason: "R", Variant: "", Metadata: flagMetadata{Account: "\u00e9"}},
		{Key: "nil", Value: nil},
	} {
		got := appendEvaluation(nil, ev)
		want, err := json.Marshal(ev)
		require.NoError(t, err)
		require.True(t, json.Valid(got), "%s", got)
		var g, w any
		require.NoError(t, json.Unmarshal(got, &g))
		require.NoError(t, json.Unmarshal(want, &w))
		require.Equal(t, w, g, "%s\n%s", got, want)
	}
}

func BenchmarkAppendEvaluation(b *testing.B) {
	ev := flagEvaluation{Key: "premium", Value: true, Reason: reasonTargetingMatch, Variant: "true",
		Metadata: flagMetadata{Account: "", LastEventID: "evt_9", UpdatedAt: "2026-11-22T10:00:00.123Z"}}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendEvaluation(buf[:0], ev)
	}
}

// Without a LISTEN session (cache mode max-age, a hot standby) the catalogue is polled.
func TestOFREPCatalogueIsPolledWithoutNotifications(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.cache.Mode, o.catalogueInterval = config.CacheMaxAge, 50*time.Millisecond })
	require.Equal(t, "FLAG_NOT_FOUND", b.flag(t, "sso", `{"targetingKey":"u_42"}`, http.StatusNotFound)["errorCode"])
	b.writeCatalogue(t, catalogue.Features("sso")...)
	m := b.flag(t, "sso", `{"targetingKey":"u_42"}`, http.StatusOK)
	require.Equal(t, false, m["value"])
	require.Equal(t, "DEFAULT", m["reason"])
}
