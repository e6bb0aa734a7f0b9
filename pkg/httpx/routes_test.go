package httpx_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/httpx"
)

func TestRoutesAnswer405WithAllowAnd404InJSON(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("DELETE /things/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("POST /things/{id}/redrive", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	h := httpx.Routes(mux)

	tests := []struct {
		name, method, path string
		status             int
		code, allow        string
	}{
		{"served", http.MethodGet, "/things/1", http.StatusOK, "", ""},
		{"HEAD with GET", http.MethodHead, "/things/1", http.StatusOK, "", ""},
		{"another served method", http.MethodDelete, "/things/1", http.StatusNoContent, "", ""},
		{"wrong method", http.MethodPut, "/things/1", http.StatusMethodNotAllowed, "method_not_allowed", "GET, HEAD, DELETE"},
		{"GET on a POST route", http.MethodGet, "/things/1/redrive", http.StatusMethodNotAllowed, "method_not_allowed", "POST"},
		{"unknown path", http.MethodGet, "/nothing", http.StatusNotFound, "not_found", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), tt.method, tt.path, nil))
			require.Equal(t, tt.status, rec.Code)
			require.Equal(t, tt.allow, rec.Header().Get("Allow"))
			if tt.code == "" {
				return
			}
			var body httpx.ErrorBody
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			require.Equal(t, tt.code, body.Error.Code)
			require.NotEmpty(t, body.Error.Message)
		})
	}
}
