// Package console is the operator console (HTML pages under /admin/, behind ADMIN_TOKENS): a
// port of the operate use cases, its errors mapped to statuses in one place (errors.go).
package console

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/processor/internal/operate"
	"github.com/tollgate/tollgate/processor/internal/projection"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/failopen"
	"github.com/tollgate/tollgate/pkg/httpx"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/subscription"
)

//go:embed templates/*.html
var consoleTemplates embed.FS

const (
	ConsoleCookie = "tollgate_admin"
	// ReasonRepair is the pending_repairs reason of a repair an operator asked for.
	ReasonRepair = "operator console"
)

// Deps is what the console reads and changes. Repair is possible when repairs is set
// (STRIPE_API_KEY: the repairer has an API).
type Deps struct {
	Tokens    []string
	Pool      *pgxpool.Pool
	JS        jetstream.JetStream
	Proj      *projection.Projector
	CanRepair bool
	Rules     subscription.Rules
	Log       *slog.Logger
}

// console serves the operator console under /admin/ (all but /admin/v1/, the JSON admin API).
type console struct {
	Deps
	auth  httpx.Tokens
	pages map[string]*template.Template
	err   error // a template that does not parse: every page answers 500
}

// With serves the console at /admin/ in front of next when tokens are set; /admin/v1/ and
// everything else go to next. Without tokens it returns next.
func With(next http.Handler, d Deps) http.Handler {
	if len(d.Tokens) == 0 {
		return next
	}
	c := &console{Deps: d, auth: httpx.NewTokens(d.Tokens), pages: map[string]*template.Template{}}
	funcs := template.FuncMap{"ts": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return "–"
			}
			return v.UTC().Format(time.RFC3339)
		case *time.Time:
			if v == nil {
				return "–"
			}
			return v.UTC().Format(time.RFC3339)
		}
		return fmt.Sprint(t)
	}}
	for _, p := range []string{"login", "search", "customer", "user", "deadletters", "failopen", "pipeline"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(consoleTemplates, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			c.err = errors.Join(c.err, fmt.Errorf("console template %s: %w", p, err))
			continue
		}
		c.pages[p] = t
	}
	if c.err != nil {
		d.Log.Error("console disabled", "error", c.err)
	}
	m := http.NewServeMux()
	m.HandleFunc("GET /admin/{$}", c.home)
	m.HandleFunc("POST /admin/login", c.login)
	m.HandleFunc("POST /admin/logout", c.logout)
	m.Handle("GET /admin/search", c.authed(c.search))
	m.Handle("GET /admin/customers/{id}", c.authed(c.customer))
	m.Handle("POST /admin/customers/{id}/replay", c.change(c.replayCustomer))
	m.Handle("POST /admin/customers/{id}/repair", c.change(c.repairCustomer))
	m.Handle("GET /admin/users/{id}", c.authed(c.user))
	m.Handle("GET /admin/dead-letters", c.authed(c.deadLetters))
	m.Handle("POST /admin/dead-letters/{id}/redrive", c.change(c.redrive))
	m.Handle("GET /admin/fail-open", c.authed(c.failOpen))
	m.Handle("POST /admin/fail-open", c.change(c.setFailOpen))
	m.Handle("GET /admin/pipeline", c.authed(c.pipeline))
	mux := http.NewServeMux()
	mux.Handle("/", next)
	mux.Handle("/admin/v1/", next)
	mux.Handle("/admin/", m)
	return mux
}

// session is the token of a request's valid cookie; ok is false without one.
func (c *console) session(r *http.Request) (string, bool) {
	ck, err := r.Cookie(ConsoleCookie)
	if err != nil || ck.Value == "" {
		return "", false
	}
	return ck.Value, c.auth.ValidHeader("Bearer " + ck.Value)
}

// Csrf is the CSRF token of a session: an HMAC of a fixed label under the session's token, so
// every instance computes the same one and a page of another origin cannot.
func Csrf(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("tollgate console csrf v1"))
	return hex.EncodeToString(m.Sum(nil))
}

// view is what every page template gets.
type view struct {
	Title string
	CSRF  string
	Flash string
	Error string
	Data  any
}

func (c *console) render(w http.ResponseWriter, status int, page string, v view) {
	t := c.pages[page]
	if c.err != nil || t == nil {
		http.Error(w, "console unavailable: see the processor's log", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, v); err != nil {
		c.Log.Error("console render", "page", page, "error", err)
		http.Error(w, "console render failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// authed serves h only with a valid cookie; otherwise 303 to the login form, no data.
func (c *console) authed(h func(http.ResponseWriter, *http.Request, view)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := c.session(r)
		if !ok {
			http.Redirect(w, r, "/admin/", http.StatusSeeOther)
			return
		}
		h(w, r, view{CSRF: Csrf(tok), Flash: r.URL.Query().Get("done"), Error: r.URL.Query().Get("failed")})
	})
}

// change serves a POST that changes something: a valid cookie and the session's CSRF token in
// the form field csrf, else 303 to the login form (no cookie) or 403 (no or a wrong token).
// h returns where to go next and what to say there.
func (c *console) change(h func(*http.Request) (to, msg string, err error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := c.session(r)
		if !ok {
			http.Redirect(w, r, "/admin/", http.StatusSeeOther)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 1<<16)
		if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(Csrf(tok))) != 1 {
			http.Error(w, "invalid CSRF token: reload the page and try again", http.StatusForbidden)
			return
		}
		to, msg, err := h(r)
		key := "done"
		if err != nil {
			c.Log.Warn("console change failed", "path", r.URL.Path, "error", err)
			key, msg = "failed", err.Error()
		} else {
			c.Log.Info("console change", "path", r.URL.Path, "result", msg)
		}
		sep := "?"
		if strings.Contains(to, "?") {
			sep = "&"
		}
		http.Redirect(w, r, to+sep+key+"="+url.QueryEscape(operate.OneLine(msg, 300)), http.StatusSeeOther)
	})
}

func (c *console) home(w http.ResponseWriter, r *http.Request) {
	if tok, ok := c.session(r); ok {
		c.render(w, http.StatusOK, "search", view{Title: "Search", CSRF: Csrf(tok)})
		return
	}
	c.render(w, http.StatusOK, "login", view{Title: "Sign in"})
}

func (c *console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<14)
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if tok == "" || !c.auth.ValidHeader("Bearer "+tok) {
		c.render(w, http.StatusUnauthorized, "login", view{Title: "Sign in", Error: "That token is not one of ADMIN_TOKENS."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: ConsoleCookie, Value: tok, Path: "/admin/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: 12 * 3600})
	http.Redirect(w, r, "/admin/search", http.StatusSeeOther)
}

func (c *console) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: ConsoleCookie, Value: "", Path: "/admin/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: -1})
	http.Redirect(w, r, "/admin/", http.StatusSeeOther)
}

// scopeURL is scopeQuery for an href of a template, which would otherwise escape its = and &.
func scopeURL(sc scope.Scope) template.URL {
	return template.URL(scopeQuery(sc)) //nolint:gosec // G203: url.Values.Encode escaped it
}

// searchHit is one search result.
type searchHit struct {
	Kind, ID, Scope, Href, Why string
}

func scopeQuery(sc scope.Scope) string {
	v := url.Values{"livemode": {strconv.FormatBool(sc.Livemode)}}
	if sc.Account != "" {
		v.Set("account", sc.Account)
	}
	return v.Encode()
}

func (c *console) search(w http.ResponseWriter, r *http.Request, v view) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	v.Title = "Search"
	var hits []searchHit
	add := func(kind, why string, keys []scope.Key) {
		for _, k := range keys {
			path := "/admin/customers/"
			if kind == "user" {
				path = "/admin/users/"
			}
			hits = append(hits, searchHit{Kind: kind, ID: k.ID, Scope: k.Scope.String(), Why: why,
				Href: path + url.PathEscape(k.ID) + "?" + scopeQuery(k.Scope)})
		}
	}
	if q != "" {
		ctx := r.Context()
		var errs []error
		if keys, err := entitlement.UserScopes(ctx, c.Pool, q); err == nil {
			add("user", "user id", keys)
		} else {
			errs = append(errs, err)
		}
		if keys, err := eventstore.CustomerScopes(ctx, c.Pool, q); err == nil {
			add("customer", "customer id", keys)
		} else {
			errs = append(errs, err)
		}
		if strings.Contains(q, "@") {
			if keys, err := eventstore.CustomersByEmail(ctx, c.Pool, q, 50); err == nil {
				add("customer", "email", keys)
			} else {
				errs = append(errs, err)
			}
		}
		if keys, err := entitlement.CustomersBySubscription(ctx, c.Pool, q); err == nil {
			add("customer", "subscription "+q, keys)
		} else {
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			c.Log.Error("console search", "error", err)
			v.Error = "search failed: " + err.Error()
		}
	}
	v.Data = struct {
		Q    string
		Hits []searchHit
	}{q, hits}
	c.render(w, http.StatusOK, "search", v)
}

// scopeLink is a link to the same page in another scope.
type scopeLink struct {
	Name, Href string
	Current    bool
}

func scopeLinks(base string, keys []scope.Key, cur scope.Scope) []scopeLink {
	out := make([]scopeLink, 0, len(keys))
	for _, k := range keys {
		out = append(out, scopeLink{Name: k.Scope.String(), Href: base + "?" + scopeQuery(k.Scope), Current: k.Scope == cur})
	}
	return out
}

// pageEvent is a timeline row with its stored payload, indented.
type pageEvent struct {
	operate.TimelineEvent
	Payload string
}

func (c *console) payloads(ctx context.Context, events []operate.TimelineEvent) ([]pageEvent, error) {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	stored, err := eventstore.Payloads(ctx, c.Pool, ids)
	if err != nil {
		return nil, err
	}
	by := make(map[string]string, len(stored))
	for _, s := range stored {
		var b bytes.Buffer
		if json.Indent(&b, s.Payload, "", "  ") != nil {
			by[s.ID] = string(s.Payload)
		} else {
			by[s.ID] = b.String()
		}
	}
	out := make([]pageEvent, len(events))
	for i, e := range events {
		out[i] = pageEvent{TimelineEvent: e, Payload: by[e.ID]}
	}
	return out, nil
}

func pretty(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// withFailOpen is the answer as the query API gives it while the fail-open switch is as given.
func withFailOpen(a entitlement.Answer, failOpen bool) entitlement.Answer {
	a.FailOpen = failOpen
	if failOpen {
		a.Premium = true
	}
	return a
}

func (c *console) customer(w http.ResponseWriter, r *http.Request, v view) {
	id := r.PathValue("id")
	v.Title = "Customer " + id
	sc, err := requestScope(r)
	if err != nil {
		c.fail(w, v, err)
		return
	}
	ctx := r.Context()
	keys, err := eventstore.CustomerScopes(ctx, c.Pool, id)
	if err != nil {
		c.fail(w, v, err)
		return
	}
	fo, _ := failopen.Read(ctx, c.Pool)
	data := struct {
		ID         string
		Scope      string
		Scopes     []scopeLink
		Found      bool
		Answer     string
		UserID     string
		Events     []pageEvent
		CanRepair  bool
		ScopeQuery template.URL
	}{ID: id, ScopeQuery: scopeURL(sc), Scope: sc.String(), Scopes: scopeLinks("/admin/customers/"+url.PathEscape(id), keys, sc), CanRepair: c.CanRepair}
	cu, err := entitlement.GetCustomer(ctx, c.Pool, sc.Of(id))
	switch {
	case err == nil:
		data.Found = true
		data.Answer = pretty(withFailOpen(entitlement.CustomerAnswer(cu), fo.On))
		data.UserID = cu.UserID
	case !errors.Is(err, entitlement.ErrNotFound):
		c.fail(w, v, err)
		return
	}
	events, _, err := operate.CustomerEvents(ctx, c.Pool, sc.Of(id), c.Rules)
	if err != nil && !errors.Is(err, operate.ErrNoHistory) {
		c.fail(w, v, err)
		return
	}
	if data.Events, err = c.payloads(ctx, events); err != nil {
		c.fail(w, v, err)
		return
	}
	status := http.StatusOK
	if !data.Found && len(events) == 0 {
		status = http.StatusNotFound
	}
	v.Data = data
	c.render(w, status, "customer", v)
}

func (c *console) user(w http.ResponseWriter, r *http.Request, v view) {
	id := r.PathValue("id")
	v.Title = "User " + id
	sc, err := requestScope(r)
	if err != nil {
		c.fail(w, v, err)
		return
	}
	ctx := r.Context()
	keys, err := entitlement.UserScopes(ctx, c.Pool, id)
	if err != nil {
		c.fail(w, v, err)
		return
	}
	fo, _ := failopen.Read(ctx, c.Pool)
	data := struct {
		ID, Scope   string
		Scopes      []scopeLink
		Found       bool
		Answer      string
		CustomerIDs []string
		ScopeQuery  template.URL
		Events      []pageEvent
	}{ID: id, Scope: sc.String(), Scopes: scopeLinks("/admin/users/"+url.PathEscape(id), keys, sc), ScopeQuery: scopeURL(sc)}
	u, err := entitlement.GetUser(ctx, c.Pool, sc.Of(id))
	switch {
	case err == nil:
		data.Found = true
		data.Answer = pretty(withFailOpen(entitlement.UserAnswer(u), fo.On))
		data.CustomerIDs = u.CustomerIDs
	case !errors.Is(err, entitlement.ErrNotFound):
		c.fail(w, v, err)
		return
	}
	status := http.StatusNotFound
	if data.Found {
		status = http.StatusOK
		tl, err := operate.UserTimeline(ctx, c.Pool, id, sc, c.Rules)
		if err != nil && !errors.Is(err, operate.ErrNoHistory) {
			c.fail(w, v, err)
			return
		}
		if data.Events, err = c.payloads(ctx, tl.Events); err != nil {
			c.fail(w, v, err)
			return
		}
	}
	v.Data = data
	c.render(w, status, "user", v)
}

func customerPage(r *http.Request) string {
	to := "/admin/customers/" + url.PathEscape(r.PathValue("id"))
	if q := r.URL.RawQuery; q != "" {
		to += "?" + q
	}
	return to
}

// replayCustomer re-derives the customer in every scope it has events of, as
// `processor replay --customer` does.
func (c *console) replayCustomer(r *http.Request) (string, string, error) {
	var out, progress bytes.Buffer
	err := operate.Replay(r.Context(), c.Pool, c.Proj, operate.ReplayOptions{Customer: r.PathValue("id")}, &out, &progress)
	return customerPage(r), "re-derived: " + strings.TrimSpace(out.String()), err
}

// repairCustomer enqueues a repair from Stripe of the customer and every subscription Stripe
// lists for it, in the page's scope (one repair.ObjectCustomerSubscriptions): a subscription
// whose events were all lost is unknown here and is found only so. The repairer applies them as
// snapshot events.
func (c *console) repairCustomer(r *http.Request) (string, string, error) {
	to := customerPage(r)
	if !c.CanRepair {
		return to, "", errors.New("repair needs STRIPE_API_KEY on the processor")
	}
	sc, err := requestScope(r)
	if err != nil {
		return to, "", err
	}
	if err := operate.EnqueueCustomerRepair(r.Context(), c.Pool, sc.Of(r.PathValue("id")), ReasonRepair); err != nil {
		return to, "", err
	}
	return to, "repair enqueued: the customer and every subscription Stripe has for it (see open repairs on the pipeline page)", nil
}

func (c *console) deadLetters(w http.ResponseWriter, r *http.Request, v view) {
	v.Title = "Dead letters"
	letters, err := eventstore.ListDeadLetters(r.Context(), c.Pool, "")
	if err != nil {
		c.fail(w, v, err)
		return
	}
	type row struct {
		eventstore.DeadLetter
		Payload string
	}
	rows := make([]row, len(letters))
	for i, d := range letters {
		var b bytes.Buffer
		p := string(d.Payload)
		if json.Indent(&b, d.Payload, "", "  ") == nil {
			p = b.String()
		}
		rows[i] = row{d, p}
	}
	v.Data = rows
	c.render(w, http.StatusOK, "deadletters", v)
}

func (c *console) redrive(r *http.Request) (string, string, error) {
	const to = "/admin/dead-letters"
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return to, "", errors.New("no such dead letter")
	}
	d, err := operate.RedriveID(r.Context(), c.Pool, c.Proj, id)
	var still *operate.StillFailingError
	switch {
	case errors.Is(err, operate.ErrNoDeadLetter):
		return to, "", fmt.Errorf("no dead letter %d (already redriven?)", id)
	case errors.As(err, &still):
		return to, "", fmt.Errorf("dead letter %d still fails: %w", id, still.Err)
	case err != nil:
		return to, "", fmt.Errorf("dead letter %d still fails: %w", id, err)
	}
	return to, fmt.Sprintf("applied dead letter %d (event %s)", id, d.EventID), nil
}

func (c *console) failOpen(w http.ResponseWriter, r *http.Request, v view) {
	v.Title = "Fail-open"
	st, err := failopen.Read(r.Context(), c.Pool)
	if err != nil {
		c.fail(w, v, err)
		return
	}
	v.Data = st
	c.render(w, http.StatusOK, "failopen", v)
}

func (c *console) setFailOpen(r *http.Request) (string, string, error) {
	const to = "/admin/fail-open"
	on := r.PostFormValue("on") == "true"
	if r.PostFormValue("confirm") != "yes" {
		return to, "", errors.New("not changed: tick the confirmation box")
	}
	st, err := failopen.Set(r.Context(), c.Pool, on)
	if err != nil {
		return to, "", err
	}
	state := "off: answers follow the read model again"
	if st.On {
		state = "on: every query API answer grants access"
	}
	return to, "fail-open is " + state, nil
}

func (c *console) pipeline(w http.ResponseWriter, r *http.Request, v view) {
	v.Title = "Pipeline"
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	v.Data = operate.Pipeline(ctx, c.Pool, c.JS)
	c.render(w, http.StatusOK, "pipeline", v)
}
