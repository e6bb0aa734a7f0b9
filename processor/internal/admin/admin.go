// Package admin is the processor's admin JSON API (/admin/v1/, behind ADMIN_TOKENS): a port of
// the operate use cases, its errors mapped to statuses in one place (errors.go).
package admin

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"

	"github.com/tollgate/tollgate/processor/internal/operate"

	"github.com/tollgate/tollgate/pkg/audit"
	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/httpx"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// adminDB is what the admin API reads (the event store and the read model) and where it
// records its changes (the audit log), through the pool.
type adminDB interface {
	entitlement.Querier
	audit.Querier
}

// With serves the admin API under /admin/ in front of base when tokens are set (ADMIN_TOKENS);
// without tokens it returns base and /admin/ does not exist. Every admin request needs
// Authorization: Bearer <token>, else 401 in the query API's error shape. Every request that
// may change something (any method but GET and HEAD) is logged and recorded in the audit log
// with the token's name and its outcome (the status).
func With(base http.Handler, admins []config.AdminToken, db adminDB, rules subscription.Rules, logger *slog.Logger) http.Handler {
	if len(admins) == 0 {
		return base
	}
	tokens := make([]string, len(admins))
	for i, a := range admins {
		tokens[i] = a.Token
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
		token, ok := httpx.BearerToken(r.Header.Get("Authorization"))
		i, valid := auth.Match(token)
		if !ok || !valid {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tollgate-admin"`)
			httpx.WriteError(w, http.StatusUnauthorized, "unauthorized", "a valid Authorization: Bearer token is required")
			return
		}
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			admin.ServeHTTP(w, r)
			return
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		admin.ServeHTTP(rec, r)
		name := admins[i].Name
		outcome := audit.OutcomeOK
		if rec.status >= 300 {
			outcome = "HTTP " + strconv.Itoa(rec.status)
		}
		logger.Info("admin change", "admin", name, "method", r.Method, "path", r.URL.Path, "status", rec.status)
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if err := audit.Record(context.WithoutCancel(r.Context()), db, audit.Entry{Actor: name, Via: audit.ViaAPI,
			Action: r.Method + " " + r.URL.Path, Outcome: outcome, Remote: host}); err != nil {
			logger.Error("admin audit", "path", r.URL.Path, "error", err)
		}
	}))
	return mux
}

// statusRecorder keeps the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(status int) {
	s.status = status
	s.ResponseWriter.WriteHeader(status)
}
