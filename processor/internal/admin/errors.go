package admin

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/tollgate/tollgate/pkg/httpx"
	"github.com/tollgate/tollgate/processor/internal/operate"
)

// writeError is the one place the admin API maps the use cases' errors to statuses, in the
// query API's error shape (every 4xx says why).
func writeError(w http.ResponseWriter, err error, logger *slog.Logger) {
	var bad *operate.InvalidParameterError
	switch {
	case errors.As(err, &bad):
		httpx.WriteError(w, http.StatusBadRequest, "invalid_parameter", bad.Error())
	case errors.Is(err, operate.ErrNoHistory):
		httpx.WriteError(w, http.StatusNotFound, "not_found", "")
	default:
		logger.Error("admin timeline failed", "error", err)
		httpx.WriteError(w, http.StatusInternalServerError, "internal", "")
	}
}
