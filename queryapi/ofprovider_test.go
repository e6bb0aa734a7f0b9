package main

import (
	"context"
	"testing"
	"time"

	"github.com/open-feature/go-sdk/openfeature"
	"github.com/open-feature/go-sdk/openfeature/isolated"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/catalogue"
	"github.com/tollgate/tollgate/pkg/failopen"
	"github.com/tollgate/tollgate/queryapi/client/ofprovider"
)

// ofClient is an OpenFeature client (the Go SDK, an API of its own per test) over the provider
// against the real query API.
func ofClient(t *testing.T, cb *clientBundle, token string, opts ...ofprovider.Option) *openfeature.Client {
	t.Helper()
	api := isolated.NewAPI()
	t.Cleanup(func() { _ = api.Shutdown(context.Background()) })
	p := ofprovider.New(cb.url, token, append([]ofprovider.Option{ofprovider.WithHTTPClient(cb.http)}, opts...)...)
	require.NoError(t, api.SetProviderAndWait(t.Context(), p))
	return api.NewClient()
}

// The Go SDK evaluates every kind of flag through the provider, with the server's reasons and
// metadata, and the SDK's errors for what the server refuses.
func TestOpenFeatureProviderAgainstTheServer(t *testing.T) {
	t.Parallel()
	cb := setupClient(t)
	cb.waitListening(t)
	cb.writeCatalogue(t, append(catalogue.Features("pro", "export"), catalogue.Limits("seats")...)...)
	cb.saveSettled(t, proCustomer())
	of := ofClient(t, cb, testToken)
	ctx := t.Context()
	user := openfeature.NewEvaluationContext("u_42", map[string]any{"email": "a@example.com"})

	premium, err := of.BooleanValueDetails(ctx, "premium", false, user)
	require.NoError(t, err)
	require.True(t, premium.Value)
	require.Equal(t, openfeature.TargetingMatchReason, premium.Reason)
	require.Equal(t, "true", premium.Variant)
	id, err := premium.FlagMetadata.GetString("last_event_id")
	require.NoError(t, err)
	require.Equal(t, "evt_9", id)
	failOpen, err := premium.FlagMetadata.GetBool("fail_open")
	require.NoError(t, err)
	require.False(t, failOpen)

	status, err := of.StringValue(ctx, "status", "", user)
	require.NoError(t, err)
	require.Equal(t, "active", status)
	pro, err := of.BooleanValue(ctx, "pro", false, user)
	require.NoError(t, err)
	require.True(t, pro)
	export, err := of.BooleanValue(ctx, "export", true, user)
	require.NoError(t, err)
	require.False(t, export)
	seats, err := of.IntValueDetails(ctx, "seats", 5, user)
	require.NoError(t, err)
	require.Zero(t, seats.Value, "no limit: 0, not the code's default")
	require.Equal(t, openfeature.TargetingMatchReason, seats.Reason)
	seatsF, err := of.FloatValue(ctx, "seats", 5, user)
	require.NoError(t, err)
	require.Zero(t, seatsF)
	obj, err := of.ObjectValue(ctx, "status", nil, user)
	require.NoError(t, err)
	require.Equal(t, "active", obj)

	nobody, err := of.BooleanValueDetails(ctx, "premium", true, openfeature.NewEvaluationContext("u_nobody", nil))
	require.NoError(t, err)
	require.False(t, nobody.Value)
	require.Equal(t, openfeature.DefaultReason, nobody.Reason)

	for _, tc := range []struct {
		name string
		flag string
		ctx  openfeature.EvaluationContext
		code openfeature.ErrorCode
	}{
		{"unknown flag", "exprot", user, openfeature.FlagNotFoundCode},
		{"no targeting key", "premium", openfeature.NewTargetlessEvaluationContext(nil), openfeature.TargetingKeyMissingCode},
		{"livemode not a boolean", "premium", openfeature.NewEvaluationContext("u_42", map[string]any{"livemode": "yes"}), openfeature.InvalidContextCode},
		{"account not an account", "premium", openfeature.NewEvaluationContext("u_42", map[string]any{"account": "cus_1"}), openfeature.InvalidContextCode},
	} {
		d, err := of.BooleanValueDetails(ctx, tc.flag, true, tc.ctx)
		require.Error(t, err, tc.name)
		require.True(t, d.Value, "%s: the code's default", tc.name)
		require.Equal(t, tc.code, d.ErrorCode, tc.name)
		require.NotEmpty(t, d.ErrorMessage, tc.name)
	}
	// A flag of another type than asked.
	n, err := of.IntValueDetails(ctx, "premium", 7, user)
	require.Error(t, err)
	require.EqualValues(t, 7, n.Value)
	require.Equal(t, openfeature.TypeMismatchCode, n.ErrorCode)

	// The scope from the context, or from the provider's options.
	live, err := of.BooleanValueDetails(ctx, "premium", true, openfeature.NewEvaluationContext("u_42", map[string]any{"livemode": true}))
	require.NoError(t, err)
	require.False(t, live.Value)
	require.Equal(t, openfeature.DefaultReason, live.Reason)
	liveOF := ofClient(t, cb, testToken, ofprovider.WithLivemode(true), ofprovider.WithAccount(""))
	live, err = liveOF.BooleanValueDetails(ctx, "premium", true, user)
	require.NoError(t, err)
	require.Equal(t, openfeature.DefaultReason, live.Reason)
	test, err := liveOF.BooleanValue(ctx, "premium", false, openfeature.NewEvaluationContext("u_42", map[string]any{"livemode": false}))
	require.NoError(t, err)
	require.True(t, test, "the context wins over the option")

	// A refused token is an error, never a value.
	bad := ofClient(t, cb, "wrong-token")
	d, err := bad.BooleanValueDetails(ctx, "premium", false, user)
	require.Error(t, err)
	require.Equal(t, openfeature.GeneralCode, d.ErrorCode)
	require.Contains(t, d.ErrorMessage, "401")
}

// Fail-open and a change reach the SDK on the next evaluation.
func TestOpenFeatureProviderFollowsChanges(t *testing.T) {
	t.Parallel()
	cb := setupClient(t)
	cb.waitListening(t)
	cb.writeCatalogue(t, catalogue.Features("pro", "export")...)
	cb.saveSettled(t, proCustomer())
	of := ofClient(t, cb, testToken)
	ctx := t.Context()
	user := openfeature.NewEvaluationContext("u_42", nil)

	export, err := of.BooleanValue(ctx, "export", true, user)
	require.NoError(t, err)
	require.False(t, export)
	c := proCustomer()
	c.Features = []string{"export", "premium", "pro"}
	cb.saveSettled(t, c)
	export, err = of.BooleanValue(ctx, "export", false, user)
	require.NoError(t, err)
	require.True(t, export, "the next evaluation sees the change")

	_, err = failopen.Set(context.Background(), cb.db.Pool, true)
	require.NoError(t, err)
	require.Eventually(t, cb.app.sw.On, 2*time.Second, 5*time.Millisecond)
	d, err := of.BooleanValueDetails(ctx, "premium", false, openfeature.NewEvaluationContext("u_nobody", nil))
	require.NoError(t, err)
	require.True(t, d.Value)
	require.Equal(t, openfeature.StaticReason, d.Reason)
	on, err := d.FlagMetadata.GetBool("fail_open")
	require.NoError(t, err)
	require.True(t, on)
}
