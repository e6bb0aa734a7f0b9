package main

import (
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/testkit/wait"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/stripetest"
)

// headersOnly opens n connections that each send a webhook's headers claiming a 1 MB body and
// then nothing, as a slow or hostile client does, and waits until the listener reads them all.
func headersOnly(t *testing.T, b *bundle, n int) {
	t.Helper()
	host := strings.TrimPrefix(b.base, "http://")
	for range n {
		c, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", host)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		_, err = fmt.Fprintf(c, "POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: t=1,v1=00\r\nContent-Length: 1000000\r\n\r\n{")
		require.NoError(t, err)
	}
	wait.For(t, 10*time.Second, "the listener holds every connection's body", func() bool { return b.srv.budget.used.Load() == int64(n*bodyChunk) })
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// 400 connections sending only headers once reserved 426 MB: the buffer was sized from the
// unauthenticated Content-Length.
func TestWebhookBodyMemoryGrowsAsRead(t *testing.T) {
	t.Parallel()
	b := setup(t)
	before := heapInUse()
	headersOnly(t, b, 100)
	grew := int64(heapInUse()) - int64(before)
	t.Logf("100 headers-only connections claiming 1 MB each: heap grew %d KiB", grew>>10)
	require.Less(t, grew, int64(20<<20), "100 headers-only connections must not reserve 100 MB (grew %d bytes)", grew)
}

// Past the body budget a webhook is refused at once with 503 overloaded and Retry-After.
func TestWebhookOverloaded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.budget = &byteBudget{limit: 3 * bodyChunk} // before any request reaches the server
	headersOnly(t, b, 3)

	_, _, raw := newEvent(t)
	resp := stripetest.Deliver(t, b.url, raw, testSecret)
	requireError(t, resp, http.StatusServiceUnavailable, "overloaded")
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	require.Zero(t, b.msgCount(t))
}
