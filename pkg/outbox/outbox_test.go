package outbox_test

import (
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/scope"

	"github.com/tollgate/tollgate/pkg/outbox"
)

// The Standard Webhooks specification's own example.
func TestSignMatchesTheSpecification(t *testing.T) {
	t.Parallel()
	key, err := base64.StdEncoding.DecodeString("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	require.NoError(t, err)
	require.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
		outbox.Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`)))
}

func TestScopeToken(t *testing.T) {
	t.Parallel()
	require.Equal(t, "live", outbox.Token(scope.Live()))
	require.Equal(t, "test", outbox.Token(scope.Scope{}))
	require.Equal(t, "live_acct_x", outbox.Token(scope.Scope{Livemode: true, Account: "acct_x"}))
}
