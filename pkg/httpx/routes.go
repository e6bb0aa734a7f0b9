package httpx

import (
	"net/http"
	"strings"
)

// Routes serves mux, a ServeMux of method patterns ("GET /admin/v1/users/{id}"), answering what
// the mux would answer in plain text with the contract's JSON errors instead: a path no pattern
// matches is 404 not_found, and a method none of the path's patterns serves is 405
// method_not_allowed with an Allow header listing the methods they do serve. mux must not have
// a catch-all pattern ("/admin/") for the paths it wants 405s on: the catch-all would match
// every method.
func Routes(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		allowed := AllowedMethods(mux, r)
		if len(allowed) == 0 {
			WriteError(w, http.StatusNotFound, "not_found", "no such route")
			return
		}
		allow := strings.Join(allowed, ", ")
		w.Header().Set("Allow", allow)
		WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not served here; allowed: "+allow)
	})
}

// AllowedMethods lists the standard methods (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS) for
// which mux has a pattern matching r's path, in that order; none when no pattern matches it.
func AllowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		probe := r.WithContext(r.Context()) // a shallow copy: only the method differs
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" {
			allowed = append(allowed, m)
		}
	}
	return allowed
}
