package natstest_test

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/natstest"
)

// The creds file gets in and JetStream answers; no credentials do not get in.
func TestStartWithCreds(t *testing.T) {
	t.Parallel()
	s, creds := natstest.StartWithCreds(t)
	_, err := nats.Connect(s.URL())
	require.Error(t, err, "anonymous")
	nc, err := nats.Connect(s.URL(), nats.UserCredentials(creds))
	require.NoError(t, err)
	defer nc.Close()
	_, err = nc.Request("$JS.API.INFO", nil, nats.DefaultTimeout)
	require.NoError(t, err, "JetStream is enabled for the account")
}
