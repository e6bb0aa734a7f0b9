package httpx_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/httpx"
)

func TestReady(t *testing.T) {
	t.Parallel()
	var ready atomic.Bool
	ready.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "/readyz", r.URL.Path)
		if !ready.Load() {
			http.Error(w, `{"status":"unavailable"}`, http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	addr := ":" + srv.URL[strings.LastIndex(srv.URL, ":")+1:]

	require.NoError(t, httpx.Probe(context.Background(), addr))
	ready.Store(false)
	require.ErrorContains(t, httpx.Probe(context.Background(), addr), "answered 503")
	require.ErrorContains(t, httpx.Probe(context.Background(), "nonsense"), "HTTP_ADDR")
}
