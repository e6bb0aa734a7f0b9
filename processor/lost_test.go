package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/testkit/syncbuf"
	"github.com/tollgate/tollgate/testkit/wait"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/natsconn"
	"github.com/tollgate/tollgate/testkit/natstest"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

// A NATS connection the server closed for good makes serve return natsconn.ErrLost within 5 s
// (the process exits non-zero and is restarted), instead of living on unable to fetch.
func TestServeExitsWhenNATSClosesTheConnection(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	proxy := natstest.NewProxy(t, ns)
	db := pgtest.NewEmpty(t)
	addr := freeAddr(t)
	env := envOf(map[string]string{"HTTP_ADDR": addr, "NATS_URL": proxy.URL(), "DATABASE_URL": db.URL})
	var stdout, stderr syncbuf.Buffer
	done := make(chan error, 1)
	go func() { done <- run(context.Background(), nil, env, &stdout, &stderr) }()
	wait.For(t, 20*time.Second, "readyz answers 200", func() bool {
		status, _ := httpGet(t, "http://"+addr+"/readyz")
		return status == http.StatusOK
	})

	refused := time.Now()
	proxy.Refuse()
	select {
	case err := <-done:
		require.ErrorIs(t, err, natsconn.ErrLost)
		require.Less(t, time.Since(refused), 5*time.Second)
	case <-time.After(5 * time.Second):
		t.Fatalf("serve lives on without NATS:\n%s", stderr.String())
	}
}
