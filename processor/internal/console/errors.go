package console

import (
	"errors"
	"net/http"

	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/processor/internal/operate"
)

// statusOf is the one place the console maps the use cases' errors to statuses.
func statusOf(err error) int {
	var bad *operate.InvalidParameterError
	switch {
	case errors.As(err, &bad):
		return http.StatusBadRequest
	case errors.Is(err, operate.ErrNoHistory):
		return http.StatusNotFound
	default:
		return http.StatusInternalServerError
	}
}

// fail answers a page that could not be made: the search page with the error, under the
// error's status (statusOf). Only failures of the console's own (500) are logged.
func (c *console) fail(w http.ResponseWriter, v view, err error) {
	status := statusOf(err)
	if status == http.StatusInternalServerError {
		c.Log.Error("console page", "error", err)
	}
	v.Error = err.Error()
	c.render(w, status, "search", v)
}

// requestScope reads ?livemode= (default true) and ?account= (default the platform).
func requestScope(r *http.Request) (scope.Scope, error) {
	q := r.URL.Query()
	return operate.ParseScope(q.Get("livemode"), q.Get("account"))
}
