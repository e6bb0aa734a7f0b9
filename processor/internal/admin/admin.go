// Package admin is the processor's admin JSON API (/admin/v1/, behind ADMIN_TOKENS): a port of
// the operate use cases, its errors mapped to statuses in one place (errors.go).
package admin

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/processor/internal/operate"
	"github.com/tollgate/tollgate/processor/internal/projection"

	"github.com/tollgate/tollgate/pkg/audit"
	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/httpx"
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
//
// The grants (POST /admin/v1/grants, GET /admin/v1/users/{user_id}/grants, DELETE
// /admin/v1/grants/{id}) go through proj, so that a grant changes the read model and notifies
// as an event does; each is recorded with the name of the token that made it.
func With(base http.Handler, admins []config.AdminToken, db adminDB, proj *projection.Projector, logger *slog.Logger) http.Handler {
	if len(admins) == 0 {
		return base
	}
	tokens := make([]string, len(admins))
	for i, a := range admins {
		tokens[i] = a.Token
	}
	rules := proj.Rules
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
	g := grantsAPI{db: db, proj: proj, logger: logger, now: time.Now}
	admin.HandleFunc("POST /admin/v1/grants", g.give)
	admin.HandleFunc("GET /admin/v1/users/{user_id}/grants", g.list)
	admin.HandleFunc("DELETE /admin/v1/grants/{id}", g.revoke)
	// No catch-all on the admin mux: it would take a wrong method for an unknown path. Routes
	// answers both in JSON: 404 not_found, and 405 method_not_allowed with Allow.
	routes := httpx.Routes(admin)
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
		name := admins[i].Name
		r = r.WithContext(operate.WithActor(r.Context(), name))
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			routes.ServeHTTP(w, r)
			return
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		routes.ServeHTTP(rec, r)
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
