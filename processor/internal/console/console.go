// Package console is the operator console (HTML pages under /admin/, behind ADMIN_TOKENS): a
// port of the operate use cases, its errors mapped to statuses in one place (errors.go).
package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/processor/internal/operate"
	"github.com/tollgate/tollgate/processor/internal/projection"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/pkg/audit"
	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/failopen"
	"github.com/tollgate/tollgate/pkg/grant"
	"github.com/tollgate/tollgate/pkg/httpx"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/session"
	"github.com/tollgate/tollgate/pkg/subscription"
)

//go:embed templates/*.html
var consoleTemplates embed.FS

const (
	// ConsoleCookie holds a console session's random id, never an admin token. __Host- makes
	// browsers accept it only with Secure, Path=/ and no Domain: no other host or path can set it.
	ConsoleCookie = "__Host-tollgate_session"
	// ReasonRepair is the pending_repairs reason of a repair an operator asked for.
	ReasonRepair = "operator console"
)

// Deps is what the console reads and changes. Repair is possible when repairs is set
// (STRIPE_API_KEY: the repairer has an API).
type Deps struct {
	// Admins are ADMIN_TOKENS with their names; sessions of a token not among them end.
	Admins    []config.AdminToken
	Pool      *pgxpool.Pool
	JS        jetstream.JetStream
	Proj      *projection.Projector
	CanRepair bool
	Rules     subscription.Rules
	Log       *slog.Logger
	History   *operate.History // the pipeline page's charts; nil: none
}

// console serves the operator console under /admin/ (all but /admin/v1/, the JSON admin API).
type console struct {
	Deps
	auth     httpx.Tokens
	digests  map[[sha256.Size]byte]bool // of the admin tokens: a session's token still configured
	throttle *session.Throttle
	now      func() time.Time
	pages    map[string]*template.Template
	err      error // a template that does not parse: every page answers 500
}

// Failed logins from one address: past maxLoginFailures within loginWindow, 429 with
// Retry-After until the window has passed.
const (
	maxLoginFailures = 10
	loginWindow      = 10 * time.Minute
)

// With serves the console at /admin/ in front of next when tokens are set; /admin/v1/ and
// everything else go to next. Without tokens it returns next.
func With(next http.Handler, d Deps) http.Handler {
	if len(d.Admins) == 0 {
		return next
	}
	tokens := make([]string, len(d.Admins))
	digests := map[[sha256.Size]byte]bool{}
	for i, a := range d.Admins {
		tokens[i] = a.Token
		digests[sha256.Sum256([]byte(a.Token))] = true
	}
	c := &console{Deps: d, auth: httpx.NewTokens(tokens), digests: digests, throttle: session.NewThrottle(maxLoginFailures, loginWindow),
		now: time.Now, pages: map[string]*template.Template{}}
	// pathseg escapes an id for a path segment of a form's action or a link: an id with / ? or ..
	// must not retarget a form (html/template keeps those in URLs).
	funcs := template.FuncMap{"pathseg": url.PathEscape, "ts": timestamp}
	for _, p := range []string{"login", "search", "customer", "user", "deadletters", "failopen", "pipeline", "audit"} {
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
	m.Handle("POST /admin/logout", c.change(c.logout))
	// The address left in the bar after a refused login: reloading it leads back to the form.
	m.HandleFunc("GET /admin/login", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/admin/", http.StatusSeeOther)
	})
	m.Handle("GET /admin/search", c.authed(c.search))
	m.Handle("GET /admin/customers/{id}", c.authed(c.customer))
	m.Handle("POST /admin/customers/{id}/replay", c.change(c.replayCustomer))
	m.Handle("POST /admin/customers/{id}/repair", c.change(c.repairCustomer))
	m.Handle("GET /admin/users/{id}", c.authed(c.user))
	m.Handle("POST /admin/users/{id}/grants", c.change(c.giveGrant))
	m.Handle("POST /admin/users/{id}/grants/{grant}/revoke", c.change(c.revokeGrant))
	m.Handle("GET /admin/dead-letters", c.authed(c.deadLetters))
	m.Handle("POST /admin/dead-letters/{id}/redrive", c.change(c.redrive))
	m.Handle("GET /admin/fail-open", c.authed(c.failOpen))
	m.Handle("POST /admin/fail-open", c.change(c.setFailOpen))
	m.Handle("GET /admin/pipeline", c.authed(c.pipeline))
	m.Handle("GET /admin/audit", c.authed(c.auditPage))
	mux := http.NewServeMux()
	mux.Handle("/", next)
	mux.Handle("/admin/v1/", next)
	mux.Handle("/admin/", httpx.Routes(m)) // 404 and 405 (with Allow) in JSON
	return mux
}

// session is the open session of a request's cookie; ok is false without one (no cookie, an
// unknown, ended or expired id, or its token left ADMIN_TOKENS).
func (c *console) session(r *http.Request) (session.Session, string, bool) {
	ck, err := r.Cookie(ConsoleCookie)
	if err != nil || ck.Value == "" {
		return session.Session{}, "", false
	}
	s, err := session.Lookup(r.Context(), c.Pool, ck.Value, c.now(), func(d [sha256.Size]byte) bool { return c.digests[d] })
	if err != nil {
		if !errors.Is(err, session.ErrNoSession) {
			c.Log.Error("console session", "error", err)
		}
		return session.Session{}, "", false
	}
	return s, ck.Value, true
}

// setCookie sets (or, with id "", clears) the session cookie.
func setCookie(w http.ResponseWriter, id string) {
	ck := &http.Cookie{Name: ConsoleCookie, Value: id, Path: "/", HttpOnly: true, Secure: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(session.MaxAge.Seconds())}
	if id == "" {
		ck.MaxAge = -1
	}
	http.SetCookie(w, ck)
}

// remote is the client address of r without its port: what failed logins are counted by.
func remote(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// record writes a change to the audit log; a failure to record is logged, never hidden.
func (c *console) record(r *http.Request, actor, action, target, outcome string) {
	err := audit.Record(r.Context(), c.Pool, audit.Entry{Actor: actor, Via: audit.ViaConsole, Action: action, Target: target,
		Outcome: outcome, Remote: remote(r)})
	if err != nil {
		c.Log.Error("console audit", "action", action, "error", err)
	}
}

// view is what every page template gets.
type view struct {
	Title string
	CSRF  string
	Admin string // the session's token name
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
		s, _, ok := c.session(r)
		if !ok {
			http.Redirect(w, r, "/admin/", http.StatusSeeOther)
			return
		}
		h(w, r, view{CSRF: s.CSRF, Admin: s.Name, Flash: r.URL.Query().Get("done"), Error: r.URL.Query().Get("failed")})
	})
}

// change serves a POST that changes something: a valid cookie and the session's CSRF token in
// the form field csrf, else 303 to the login form (no cookie) or 403 (no or a wrong token).
// h returns where to go next and what to say there. Every change is logged and recorded in the
// audit log with the session's token name, its outcome included.
func (c *console) change(h func(http.ResponseWriter, *http.Request) (to, msg string, err error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _, ok := c.session(r)
		if !ok {
			http.Redirect(w, r, "/admin/", http.StatusSeeOther)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 1<<16)
		if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.CSRF)) != 1 {
			http.Error(w, "invalid CSRF token: reload the page and try again", http.StatusForbidden)
			return
		}
		to, msg, err := h(w, r.WithContext(operate.WithActor(r.Context(), s.Name)))
		key, outcome := "done", audit.OutcomeOK
		if err != nil {
			c.Log.Warn("console change failed", "admin", s.Name, "path", r.URL.Path, "error", err)
			key, msg, outcome = "failed", err.Error(), "failed: "+err.Error()
		} else {
			c.Log.Info("console change", "admin", s.Name, "path", r.URL.Path, "result", msg)
		}
		c.record(r, s.Name, r.Method+" "+r.URL.Path, r.PathValue("id"), outcome)
		sep := "?"
		if strings.Contains(to, "?") {
			sep = "&"
		}
		http.Redirect(w, r, to+sep+key+"="+url.QueryEscape(operate.OneLine(msg, 300)), http.StatusSeeOther)
	})
}

func (c *console) home(w http.ResponseWriter, r *http.Request) {
	if s, _, ok := c.session(r); ok {
		c.render(w, http.StatusOK, "search", view{Title: "Search", CSRF: s.CSRF, Admin: s.Name})
		return
	}
	c.render(w, http.StatusOK, "login", view{Title: "Sign in"})
}

// login opens a session for a token of ADMIN_TOKENS. Failed logins are counted per address:
// past maxLoginFailures in loginWindow the address gets 429 with Retry-After. A failure is
// logged with the address, never with the token tried.
func (c *console) login(w http.ResponseWriter, r *http.Request) {
	addr, now := remote(r), c.now()
	if wait, ok := c.throttle.Allow(addr, now); !ok {
		secs := int(wait.Round(time.Second).Seconds()) + 1
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		c.Log.Warn("console login refused: too many failed logins", "remote", addr, "retry_after_s", secs)
		c.render(w, http.StatusTooManyRequests, "login", view{Title: "Sign in",
			Error: fmt.Sprintf("Too many failed sign-ins from your address: try again in %d s.", secs)})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<14)
	i, ok := c.auth.Match(strings.TrimSpace(r.PostFormValue("token")))
	if !ok {
		c.throttle.Fail(addr, now)
		c.Log.Warn("console login failed", "remote", addr)
		c.render(w, http.StatusUnauthorized, "login", view{Title: "Sign in", Error: "That token is not one of ADMIN_TOKENS."})
		return
	}
	c.throttle.Succeed(addr)
	a := c.Admins[i]
	id, _, err := session.Create(r.Context(), c.Pool, a.Name, sha256.Sum256([]byte(a.Token)), now)
	if err != nil {
		c.Log.Error("console login", "error", err)
		http.Error(w, "could not open a session: see the processor's log", http.StatusInternalServerError)
		return
	}
	c.Log.Info("console login", "admin", a.Name, "remote", addr)
	c.record(r, a.Name, "login", "", audit.OutcomeOK)
	setCookie(w, id)
	http.Redirect(w, r, "/admin/search", http.StatusSeeOther)
}

// logout ends the session (a change: it needs the session's CSRF token).
func (c *console) logout(w http.ResponseWriter, r *http.Request) (string, string, error) {
	_, id, _ := c.session(r)
	setCookie(w, "")
	if err := session.End(r.Context(), c.Pool, id, c.now()); err != nil {
		return "/admin/", "", err
	}
	return "/admin/", "signed out", nil
}

// auditPage lists the audit log, newest first, a page at a time (?before=<id>).
func (c *console) auditPage(w http.ResponseWriter, r *http.Request, v view) {
	v.Title = "Audit log"
	before, _ := strconv.ParseInt(r.URL.Query().Get("before"), 10, 64)
	entries, err := audit.List(r.Context(), c.Pool, auditPageSize, before)
	if err != nil {
		c.fail(w, v, err)
		return
	}
	next := ""
	if len(entries) == auditPageSize {
		next = "/admin/audit?before=" + strconv.FormatInt(entries[len(entries)-1].ID, 10)
	}
	v.Data = struct {
		Entries []audit.Entry
		Next    string
	}{entries, next}
	c.render(w, http.StatusOK, "audit", v)
}

// auditPageSize and searchPageSize are the rows of one page.
const (
	auditPageSize  = 100
	searchPageSize = 50
)

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
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	page = max(page, 0)
	next := ""
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
			// The user's customers, each in the user's scope: one click to a timeline.
			for _, k := range keys {
				u, err := entitlement.GetUser(ctx, c.Pool, k)
				if err != nil {
					continue // known by a scope without an answer: the user hit says enough
				}
				for _, id := range u.CustomerIDs {
					add("customer", "customer of user "+q, []scope.Key{k.Of(id)})
				}
			}
		} else {
			errs = append(errs, err)
		}
		if keys, err := eventstore.CustomerScopes(ctx, c.Pool, q); err == nil {
			add("customer", "customer id", keys)
		} else {
			errs = append(errs, err)
		}
		if strings.Contains(q, "@") {
			if keys, err := eventstore.CustomersByEmailPage(ctx, c.Pool, q, searchPageSize, page*searchPageSize); err == nil {
				add("customer", "email", keys)
				if len(keys) == searchPageSize {
					next = "/admin/search?" + url.Values{"q": {q}, "page": {strconv.Itoa(page + 1)}}.Encode()
				}
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
		Next string
	}{q, hits, next}
	c.render(w, http.StatusOK, "search", v)
}

// scopeLink is a link to the same page in another scope.
// timestamp is a time on one line, as people read it ("7 Dec 2026 05:43:12 UTC"), with the
// exact value (RFC 3339, nanoseconds) on hover and in datetime; "–" for none.
func timestamp(t any) template.HTML {
	var v time.Time
	switch x := t.(type) {
	case time.Time:
		v = x
	case *time.Time:
		if x != nil {
			v = *x
		}
	default:
		return template.HTML(template.HTMLEscapeString(fmt.Sprint(t))) //nolint:gosec // escaped
	}
	if v.IsZero() {
		return "–"
	}
	exact := v.UTC().Format(time.RFC3339Nano)
	return template.HTML(fmt.Sprintf(`<time datetime="%s" title="%s">%s</time>`, //nolint:gosec // formatted times only
		exact, exact, v.UTC().Format("2 Jan 2006 15:04:05 UTC")))
}

// scopedAnswer is a user's answer in one scope, for the user page's every-scope summary.
type scopedAnswer struct {
	Scope, Href string
	Current     bool
	Answer      entitlement.Answer
}

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
	ctx := r.Context()
	keys, sc, fo, err := c.pageScopes(r, func(ctx context.Context) ([]scope.Key, error) { return eventstore.CustomerScopes(ctx, c.Pool, id) })
	if err != nil {
		c.fail(w, v, err)
		return
	}
	data := struct {
		ID         string
		Scope      string
		Scopes     []scopeLink
		Found      bool
		Answer     string
		Glance     entitlement.Answer
		UserID     string
		Events     []pageEvent
		CanRepair  bool
		ScopeQuery template.URL
	}{ID: id, ScopeQuery: scopeURL(sc), Scope: sc.String(), Scopes: scopeLinks("/admin/customers/"+url.PathEscape(id), keys, sc), CanRepair: c.CanRepair}
	cu, err := entitlement.GetCustomer(ctx, c.Pool, sc.Of(id))
	switch {
	case err == nil:
		data.Found = true
		data.Glance = withFailOpen(entitlement.CustomerAnswer(cu), fo.On)
		data.Answer = pretty(data.Glance)
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
	ctx := r.Context()
	keys, sc, fo, err := c.pageScopes(r, func(ctx context.Context) ([]scope.Key, error) { return entitlement.UserScopes(ctx, c.Pool, id) })
	if err != nil {
		c.fail(w, v, err)
		return
	}
	data := struct {
		ID, Scope   string
		Scopes      []scopeLink
		Found       bool
		Answer      string
		Glance      entitlement.Answer
		CustomerIDs []string
		ScopeQuery  template.URL
		Events      []pageEvent
		Everywhere  []scopedAnswer
		Grants      []grant.Grant
	}{ID: id, Scope: sc.String(), Scopes: scopeLinks("/admin/users/"+url.PathEscape(id), keys, sc), ScopeQuery: scopeURL(sc)}
	if data.Grants, err = operate.ListGrants(ctx, c.Pool, sc.Of(id)); err != nil {
		c.fail(w, v, err)
		return
	}
	// The user in every scope that has an answer, at a glance; the current one in full below.
	for _, k := range keys {
		u, err := entitlement.GetUser(ctx, c.Pool, k)
		if errors.Is(err, entitlement.ErrNotFound) {
			continue
		}
		if err != nil {
			c.fail(w, v, err)
			return
		}
		data.Everywhere = append(data.Everywhere, scopedAnswer{Scope: k.Scope.String(),
			Href: "/admin/users/" + url.PathEscape(id) + "?" + scopeQuery(k.Scope), Current: k.Scope == sc,
			Answer: withFailOpen(entitlement.UserAnswer(u), fo.On)})
	}
	u, err := entitlement.GetUser(ctx, c.Pool, sc.Of(id))
	switch {
	case err == nil:
		data.Found = true
		data.Glance = withFailOpen(entitlement.UserAnswer(u), fo.On)
		data.Answer = pretty(data.Glance)
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

// pageScopes are the scopes a customer or user page's id has answers in (scopesOf), the scope
// the page shows (pageScope) and the fail-open switch its answers are shown under.
func (c *console) pageScopes(r *http.Request, scopesOf func(context.Context) ([]scope.Key, error)) ([]scope.Key, scope.Scope, failopen.Status, error) {
	keys, err := scopesOf(r.Context())
	if err != nil {
		return nil, scope.Scope{}, failopen.Status{}, err
	}
	sc, err := pageScope(r, keys)
	if err != nil {
		return nil, scope.Scope{}, failopen.Status{}, err
	}
	fo, _ := failopen.Read(r.Context(), c.Pool) // unreadable: shown as off, as the query API falls back
	return keys, sc, fo, nil
}

// pageScope is the scope a customer or user page shows: the one the request names (livemode,
// account), else the first of keys, the scopes the id has answers in (a customer id names one
// customer in one scope), else the default scope.
func pageScope(r *http.Request, keys []scope.Key) (scope.Scope, error) {
	q := r.URL.Query()
	if !q.Has("livemode") && !q.Has("account") && len(keys) > 0 {
		return keys[0].Scope, nil
	}
	return requestScope(r)
}

func userPage(r *http.Request) string {
	to := "/admin/users/" + url.PathEscape(r.PathValue("id"))
	if q := r.URL.RawQuery; q != "" {
		to += "?" + q
	}
	return to
}

// giveGrant gives the page's user, in the page's scope, the grant of the form: features and
// limits as comma-separated lists (limits as name=N), until in RFC 3339 or empty, a reason; it
// is recorded with the name of the session's token.
func (c *console) giveGrant(_ http.ResponseWriter, r *http.Request) (string, string, error) {
	to := userPage(r)
	sc, err := requestScope(r)
	if err != nil {
		return to, "", err
	}
	n := grant.New{Scope: sc, UserID: r.PathValue("id"), Reason: r.PostFormValue("reason"), By: operate.Actor(r.Context()),
		Limits: map[string]int64{}}
	for _, f := range strings.Split(r.PostFormValue("features"), ",") {
		if f = strings.TrimSpace(f); f != "" {
			n.Features = append(n.Features, f)
		}
	}
	for _, l := range strings.Split(r.PostFormValue("limits"), ",") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		name, v, _ := strings.Cut(l, "=")
		i, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return to, "", fmt.Errorf("limit %q: want name=N", l)
		}
		n.Limits[strings.TrimSpace(name)] = i
	}
	if u := strings.TrimSpace(r.PostFormValue("until")); u != "" {
		t, err := time.Parse(time.RFC3339, u)
		if err != nil {
			return to, "", fmt.Errorf("until %q: want RFC 3339, such as 2027-01-31T00:00:00Z", u)
		}
		n.Until = &t
	}
	g, err := operate.GiveGrant(r.Context(), c.Proj, n, time.Now())
	if err != nil {
		return to, "", err
	}
	return to, "given: " + g.Why(), nil
}

// revokeGrant ends one of the page user's grants at once, with the form's reason.
func (c *console) revokeGrant(_ http.ResponseWriter, r *http.Request) (string, string, error) {
	to := userPage(r)
	by := operate.Actor(r.Context())
	g, err := operate.RevokeGrant(r.Context(), c.Proj, r.PathValue("grant"), by, r.PostFormValue("reason"))
	if err != nil {
		return to, "", err
	}
	return to, g.ID + " revoked by " + by, nil
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
func (c *console) replayCustomer(_ http.ResponseWriter, r *http.Request) (string, string, error) {
	var out, progress bytes.Buffer
	err := operate.Replay(r.Context(), c.Pool, c.Proj, operate.ReplayOptions{Customer: r.PathValue("id")}, &out, &progress)
	return customerPage(r), "re-derived: " + strings.TrimSpace(out.String()), err
}

// repairCustomer enqueues a repair from Stripe of the customer and every subscription Stripe
// lists for it, in the page's scope (one repair.ObjectCustomerSubscriptions): a subscription
// whose events were all lost is unknown here and is found only so. The repairer applies them as
// snapshot events.
func (c *console) repairCustomer(_ http.ResponseWriter, r *http.Request) (string, string, error) {
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

func (c *console) redrive(_ http.ResponseWriter, r *http.Request) (string, string, error) {
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

func (c *console) setFailOpen(_ http.ResponseWriter, r *http.Request) (string, string, error) {
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
	p := operate.Pipeline(ctx, c.Pool, c.JS)
	var samples []operate.Sample
	if c.History != nil {
		samples = c.History.Samples()
	}
	v.Data = struct {
		ReadAt time.Time
		Rows   []pipelineRow
		Charts []pipelineChart
		Every  string
	}{p.ReadAt, pipelineRows(p), pipelineCharts(samples, p.ReadAt), humanAge(operate.HistoryEvery)}
	c.render(w, http.StatusOK, "pipeline", v)
}
