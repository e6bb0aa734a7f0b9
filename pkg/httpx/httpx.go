// Package httpx holds the HTTP plumbing the three programs share: JSON answers in the contract's
// error shape, /healthz and /readyz handlers, serving with a graceful shutdown, the bearer-token
// set of the admin and query APIs, and the healthcheck command's probe of /readyz.
package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// ErrorBody is the body of every error answer: {"error":{"code":"…","message":"…"}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is a machine-readable code and a message for humans (omitted when empty).
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
}

// WriteJSON answers status with v as JSON. Encoding errors are not reported: the status line is
// already sent and v is expected to be a plain struct or map.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"encode answer"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// WriteError answers status with the contract's error body.
func WriteError(w http.ResponseWriter, status int, code, message string) {
	WriteJSON(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: message}})
}

// Health answers 200 {"status":"ok"} for as long as the process serves HTTP.
func Health() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// Check is one dependency of readiness: nil when it answers, otherwise an error that says what
// is wrong ("nats: not connected"). It must respect ctx.
type Check func(ctx context.Context) error

// ReadyBody is the answer of Ready.
type ReadyBody struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
}

// Ready answers 200 {"ready":true} when every check passes within timeout, in order, and
// otherwise 503 {"ready":false,"reason":PublicReason(error of the first failing check)}; the
// error itself goes to logger (when not nil) only: /readyz is unauthenticated and a driver's
// error names the user, database and host.
func Ready(timeout time.Duration, logger *slog.Logger, checks ...Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		for _, check := range checks {
			if err := check(ctx); err != nil {
				if logger != nil {
					logger.Warn("not ready", "error", err)
				}
				WriteJSON(w, http.StatusServiceUnavailable, ReadyBody{Reason: PublicReason(err)})
				return
			}
		}
		WriteJSON(w, http.StatusOK, ReadyBody{Ready: true})
	})
}

// PublicReason is what an unauthenticated answer may say of a failed check: the dependency the
// error names by its prefix ("postgres: ...", "nats: ...", "schema: ...") and no more, since the
// rest may carry connection details. Errors without such a prefix give a bare "not ready".
func PublicReason(err error) string {
	const suffix = "not ready (details in the log)"
	prefix, _, ok := strings.Cut(err.Error(), ": ")
	if !ok || len(prefix) > 16 || strings.ContainsFunc(prefix, func(r rune) bool { return r < 'a' || r > 'z' }) {
		return suffix
	}
	return prefix + ": " + suffix
}

// Serve serves srv on ln until ctx is done or serving fails. On ctx done it shuts srv down:
// the listener closes at once, in-flight requests finish within shutdownTimeout, then Serve
// returns nil. It returns an error when serving fails or in-flight requests outlive the timeout.
// ln is closed in every case.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, shutdownTimeout time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	// The serving context is done; shutdown gets its own deadline.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	shutdownErr := srv.Shutdown(sctx)
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	}
	if shutdownErr != nil {
		_ = srv.Close()
		return fmt.Errorf("shut down %s: in-flight requests did not finish in %s: %w", ln.Addr(), shutdownTimeout, shutdownErr)
	}
	return nil
}
