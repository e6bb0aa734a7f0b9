package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/testkit/wait"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/natsconn"
	"github.com/tollgate/tollgate/testkit/natstest"
)

// A connection the server closes on a protocol error is never re-established by nats.go: the
// listener once lived on answering 503 to every webhook with /healthz ok. It now exits non-zero
// within 5 s, for its supervisor to restart it, and logs only JSON meanwhile.
func TestRunExitsWhenNATSClosesTheConnection(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	proxy := natstest.NewProxy(t, ns)
	l := startWith(t, proxy.URL(), map[string]string{"NATS_URL": proxy.URL() + ",nats://user:s3cret@127.0.0.1:1"})
	wait.For(t, 10*time.Second, "ready", func() bool {
		code, _ := httpGet(t, "http://"+l.addr+"/readyz")
		return code == http.StatusOK
	})

	refused := time.Now()
	proxy.Refuse()
	wait.For(t, 5*time.Second, "run returns", l.returned)
	require.ErrorIs(t, l.wait(t), natsconn.ErrLost)
	require.Less(t, time.Since(refused), 5*time.Second)
	require.NotEqual(t, 0, exitCode(l.err))

	logs := l.stderr.String()
	require.NotContains(t, logs, "s3cret", "no password in a log line")
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		require.True(t, json.Valid(sc.Bytes()), "every log line is JSON: %s", sc.Text())
	}
}
