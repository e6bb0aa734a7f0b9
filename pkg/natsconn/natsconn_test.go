package natsconn_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/natsconn"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://user:s3cret@nats:4222", "nats://user:xxxxx@nats:4222"},
		{"nats://tok3n@nats:4222", "nats://xxxxx@nats:4222"},
		{"nats://a:p1@n1:4222, nats://a:p2@n2:4222", "nats://a:xxxxx@n1:4222,nats://a:xxxxx@n2:4222"},
	} {
		require.Equal(t, tt.want, natsconn.Redact(tt.in), tt.in)
	}
}

// The error of a failed connect names the URL without its password.
func TestConnectErrorIsRedacted(t *testing.T) {
	t.Parallel()
	_, err := natsconn.Connect("nats://user:s3cret@127.0.0.1:4222\x7f", "test", "", nil)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret")
}
