package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/stripetest"
)

// BenchmarkReadBody reads a real 6 KB event as the webhook handler does: buffer=fresh is a new
// buffer per request (the earlier way, the baseline), buffer=pooled is bodyBuffers.
func BenchmarkReadBody(b *testing.B) {
	raw := stripetest.Fixture(b, "customer.subscription.created.json")
	for _, mode := range []string{"fresh", "pooled"} {
		b.Run("buffer="+mode, func(b *testing.B) {
			var bodies bodyBuffers
			budget := &byteBudget{limit: maxBodiesInFlight << 20}
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for range b.N {
				r := httptest.NewRequest(http.MethodPost, "/webhooks/stripe", bytes.NewReader(raw))
				buf := bytes.NewBuffer(make([]byte, 0, 4096))
				if mode == "pooled" {
					buf = bodies.get()
				}
				body, reserved, err := readBody(w, r, 1<<20, buf, budget)
				budget.release(reserved)
				if err != nil || len(body) != len(raw) {
					b.Fatalf("read %d bytes: %v", len(body), err)
				}
				if mode == "pooled" {
					bodies.put(buf)
				}
			}
		})
	}
}

// A buffer comes back empty, and one grown past maxPooledBody is not kept.
func TestBodyBuffersReuseOnlySmallBuffers(t *testing.T) {
	t.Parallel()
	var bodies bodyBuffers
	buf := bodies.get()
	buf.WriteString("evt")
	bodies.put(buf)
	again := bodies.get()
	require.Zero(t, again.Len(), "a reused buffer is empty")

	big := bytes.NewBuffer(make([]byte, 0, maxPooledBody+1))
	bodies.put(big)
	require.NotSame(t, big, bodies.get(), "a large buffer is left to the garbage collector")
}
