package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tollgate/tollgate/pkg/grant"
	"github.com/tollgate/tollgate/pkg/httpx"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/processor/internal/operate"
	"github.com/tollgate/tollgate/processor/internal/projection"
)

// grantsAPI serves the grants of the admin API.
type grantsAPI struct {
	db     adminDB
	proj   *projection.Projector
	logger *slog.Logger
	now    func() time.Time
}

// grantRequest is POST /admin/v1/grants' body. Livemode is true when absent, as the query API's
// default scope of an operator (operate.ParseScope); account null is the platform.
type grantRequest struct {
	UserID   string           `json:"user_id"`
	Livemode *bool            `json:"livemode"`
	Account  *string          `json:"account"`
	Features []string         `json:"features"`
	Limits   map[string]int64 `json:"limits"`
	Until    *time.Time       `json:"until"`
	Reason   string           `json:"reason"`
}

// revokeRequest is DELETE /admin/v1/grants/{id}'s optional body.
type revokeRequest struct {
	Reason string `json:"reason"`
}

// maxGrantBody bounds a grant request: a few names and a reason.
const maxGrantBody = 64 << 10

func (g grantsAPI) give(w http.ResponseWriter, r *http.Request) {
	var req grantRequest
	if err := decodeBody(r, &req, true); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "invalid_body", err.Error())
		return
	}
	sc := scope.Live()
	if req.Livemode != nil {
		sc.Livemode = *req.Livemode
	}
	if req.Account != nil {
		sc.Account = *req.Account
	}
	n := grant.New{Scope: sc, UserID: req.UserID, Features: req.Features, Limits: req.Limits, Until: req.Until,
		Reason: req.Reason, By: operate.Actor(r.Context())}
	created, err := operate.GiveGrant(r.Context(), g.proj, n, g.now())
	if err != nil {
		writeGrantError(w, err, g.logger)
		return
	}
	g.logger.Info("grant given", "grant", created.ID, "user", created.UserID, "scope", sc.String(), "by", created.By, "reason", created.Reason)
	httpx.WriteJSON(w, http.StatusCreated, created)
}

func (g grantsAPI) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sc, err := operate.ParseScope(q.Get("livemode"), q.Get("account"))
	if err != nil {
		writeError(w, err, g.logger)
		return
	}
	gs, err := operate.ListGrants(r.Context(), g.db, sc.Of(r.PathValue("user_id")))
	if err != nil {
		writeGrantError(w, err, g.logger)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, struct {
		UserID   string        `json:"user_id"`
		Livemode bool          `json:"livemode"`
		Account  *string       `json:"account"`
		Grants   []grant.Grant `json:"grants"`
	}{r.PathValue("user_id"), sc.Livemode, accountOf(sc), gs})
}

func (g grantsAPI) revoke(w http.ResponseWriter, r *http.Request) {
	var req revokeRequest
	if err := decodeBody(r, &req, false); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "invalid_body", err.Error())
		return
	}
	if req.Reason == "" {
		req.Reason = r.URL.Query().Get("reason")
	}
	by := operate.Actor(r.Context())
	ended, err := operate.RevokeGrant(r.Context(), g.proj, r.PathValue("id"), by, req.Reason)
	if err != nil {
		writeGrantError(w, err, g.logger)
		return
	}
	g.logger.Info("grant revoked", "grant", ended.ID, "user", ended.UserID, "by", by, "reason", req.Reason)
	httpx.WriteJSON(w, http.StatusOK, ended)
}

// decodeBody reads a JSON object into v, refusing unknown fields and trailing data; an empty body
// is an error only when required.
func decodeBody(r *http.Request, v any, required bool) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxGrantBody+1))
	if err != nil {
		return fmt.Errorf("read the body: %w", err)
	}
	if len(body) > maxGrantBody {
		return fmt.Errorf("the body is larger than %d bytes", maxGrantBody)
	}
	if strings.TrimSpace(string(body)) == "" {
		if required {
			return errors.New("a JSON object is required")
		}
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not a valid grant request: %w", err)
	}
	if dec.More() {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

// writeGrantError maps the grant use cases' errors to statuses, in the query API's error shape.
func writeGrantError(w http.ResponseWriter, err error, logger *slog.Logger) {
	switch {
	case errors.Is(err, grant.ErrInvalid):
		httpx.WriteError(w, http.StatusBadRequest, "invalid_grant", err.Error())
	case errors.Is(err, grant.ErrNotFound):
		httpx.WriteError(w, http.StatusNotFound, "not_found", "no grant with that id")
	case errors.Is(err, grant.ErrEnded):
		httpx.WriteError(w, http.StatusConflict, "grant_ended", "the grant has already ended (revoked or expired)")
	default:
		logger.Error("admin grants failed", "error", err)
		httpx.WriteError(w, http.StatusInternalServerError, "internal", "")
	}
}

func accountOf(sc scope.Scope) *string {
	if sc.Account == "" {
		return nil
	}
	return &sc.Account
}
