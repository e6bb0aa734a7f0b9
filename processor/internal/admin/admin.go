// Package admin is the processor's admin JSON API (/admin/v1/, behind ADMIN_TOKENS): a port of
// the operate use cases, its errors mapped to statuses in one place (errors.go).
package admin

import (
	"log/slog"
	"net/http"

	"github.com/tollgate/tollgate/processor/internal/operate"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/httpx"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// adminDB is what the admin API reads: the event store and the read model, through the pool.
type adminDB interface {
	entitlement.Querier
}

// With serves the admin API under /admin/ in front of base when tokens are set (ADMIN_TOKENS);
// without tokens it returns base and /admin/ does not exist. Every admin request needs
// Authorization: Bearer <token>, else 401 in the query API's error shape.
func With(base http.Handler, tokens []string, db adminDB, rules subscription.Rules, logger *slog.Logger) http.Handler {
	if len(tokens) == 0 {
		return base
	}
	auth := httpx.NewTokens(tokens)
	admin := http.NewServeMux()
	admin.HandleFunc("GET /admin/v1/customers/{customer_id}/timeline", func(w http.ResponseWriter, r *http.Request) {
		tl, err := operate.CustomerTimeline(r.Context(), db, r.PathValue("customer_id"), rules)
		if err != nil {
			writeError(w, err, logger)
			return
		}
		httpx.WriteJSON(w, http.StatusOK, tl)
	})
	admin.HandleFunc("GET /admin/v1/users/{user_id}/timeline", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		sc, err := operate.ParseScope(q.Get("livemode"), q.Get("account"))
		if err != nil {
			writeError(w, err, logger)
			return
		}
		tl, err := operate.UserTimeline(r.Context(), db, r.PathValue("user_id"), sc, rules)
		if err != nil {
			writeError(w, err, logger)
			return
		}
		httpx.WriteJSON(w, http.StatusOK, tl)
	})
	admin.HandleFunc("/admin/", func(w http.ResponseWriter, _ *http.Request) {
		httpx.WriteError(w, http.StatusNotFound, "not_found", "")
	})
	mux := http.NewServeMux()
	mux.Handle("/", base)
	mux.Handle("/admin/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !auth.ValidHeader(r.Header.Get("Authorization")) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tollgate-admin"`)
			httpx.WriteError(w, http.StatusUnauthorized, "unauthorized", "a valid Authorization: Bearer token is required")
			return
		}
		admin.ServeHTTP(w, r)
	}))
	return mux
}
