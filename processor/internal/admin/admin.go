package admin

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/tollgate/tollgate/processor/internal/operate"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/httpx"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// adminDB is what the admin API reads: the event store and the read model, through the pool.
type adminDB interface {
	entitlement.Querier
}

// withAdmin serves the admin API under /admin/ in front of base when tokens are set (ADMIN_TOKENS);
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
		answerTimeline(w, tl, err, logger)
	})
	admin.HandleFunc("GET /admin/v1/users/{user_id}/timeline", func(w http.ResponseWriter, r *http.Request) {
		sc, param, ok := RequestScope(r)
		if !ok {
			httpx.WriteError(w, http.StatusBadRequest, "invalid_parameter", param+" is invalid")
			return
		}
		tl, err := operate.UserTimeline(r.Context(), db, r.PathValue("user_id"), sc, rules)
		answerTimeline(w, tl, err, logger)
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

// requestScope reads ?livemode= (default true) and ?account= (default the platform); on a bad
// value it names the parameter.
func RequestScope(r *http.Request) (scope.Scope, string, bool) {
	sc := scope.Live()
	q := r.URL.Query()
	if v := q.Get("livemode"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return sc, "livemode", false
		}
		sc.Livemode = b
	}
	if v := q.Get("account"); v != "" {
		if !scope.ValidAccount(v) {
			return sc, "account", false
		}
		sc.Account = v
	}
	return sc, "", true
}

func answerTimeline(w http.ResponseWriter, tl operate.Timeline, err error, logger *slog.Logger) {
	switch {
	case err == nil:
		httpx.WriteJSON(w, http.StatusOK, tl)
	case errors.Is(err, operate.ErrNoHistory):
		httpx.WriteError(w, http.StatusNotFound, "not_found", "")
	default:
		logger.Error("admin timeline failed", "error", err)
		httpx.WriteError(w, http.StatusInternalServerError, "internal", "")
	}
}
