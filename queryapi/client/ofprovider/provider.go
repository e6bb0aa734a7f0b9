// Package ofprovider is an OpenFeature provider (github.com/open-feature/go-sdk) that reads
// Tollgate's query API: a user's entitlement as flags. It speaks the query API's OpenFeature
// Remote Evaluation Protocol endpoint (POST /ofrep/v1/evaluate/flags/{key}) with the same
// bearer token as the client package.
//
//	if err := openfeature.SetProviderAndWait(ofprovider.New("http://queryapi:8081", token)); err != nil {
//		return err
//	}
//	flags := openfeature.NewDefaultClient()
//	user := openfeature.NewEvaluationContext(userID, nil)
//	export, _ := flags.BooleanValue(ctx, "export", false, user)
//	seats, _ := flags.IntValue(ctx, "seats", 0, user)
//
// The flags: premium (boolean), status (string), every feature name (boolean) and every limit
// name (integer). The targeting key is the app's user id; the context attributes livemode
// (boolean) and account (acct_…) choose the scope, else the provider's (WithLivemode,
// WithAccount), else the server's default. Other attributes are not sent.
//
// On any failure the SDK returns the code's default value with the error: FLAG_NOT_FOUND for an
// unknown name, TARGETING_KEY_MISSING without a user id, INVALID_CONTEXT for a bad livemode or
// account, TYPE_MISMATCH when the flag is of another type, GENERAL when the query API cannot be
// reached or refuses the token. A Provider is safe for concurrent use.
package ofprovider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/open-feature/go-sdk/openfeature"
)

// DefaultTimeout bounds one evaluation when WithTimeout is not given.
const DefaultTimeout = 2 * time.Second

// maxBody bounds the answers the provider reads.
const maxBody = 1 << 20

// Context attributes the query API reads besides the targeting key.
const (
	AttrLivemode = "livemode"
	AttrAccount  = "account"
)

// Provider evaluates flags against the query API. Create it with New.
type Provider struct {
	base       string
	auth       string
	httpClient *http.Client
	timeout    time.Duration
	livemode   *bool
	account    *string
}

// Option configures a Provider.
type Option func(*Provider)

// WithHTTPClient makes the provider use hc (its transport, proxies, TLS) instead of a client of
// its own.
func WithHTTPClient(hc *http.Client) Option { return func(p *Provider) { p.httpClient = hc } }

// WithTimeout bounds each evaluation (DefaultTimeout otherwise); the caller's context may end
// it sooner.
func WithTimeout(d time.Duration) Option { return func(p *Provider) { p.timeout = d } }

// WithLivemode is the Stripe mode asked about when the evaluation context has no livemode.
func WithLivemode(live bool) Option { return func(p *Provider) { p.livemode = &live } }

// WithAccount is the connected account (acct_…) asked about when the evaluation context has no
// account; "" is the platform.
func WithAccount(account string) Option { return func(p *Provider) { p.account = &account } }

// New is a provider for the query API at baseURL ("http://queryapi:8081") with one of its
// QUERYAPI_TOKENS. It makes no request until the first evaluation.
func New(baseURL, token string, opts ...Option) *Provider {
	p := &Provider{base: strings.TrimRight(baseURL, "/"), auth: "Bearer " + token, timeout: DefaultTimeout}
	for _, o := range opts {
		o(p)
	}
	if p.httpClient == nil {
		p.httpClient = &http.Client{}
	}
	return p
}

var _ openfeature.FeatureProvider = (*Provider)(nil)

// Metadata names the provider.
func (p *Provider) Metadata() openfeature.Metadata { return openfeature.Metadata{Name: "Tollgate"} }

// Hooks are none.
func (p *Provider) Hooks() []openfeature.Hook { return nil }

// BooleanEvaluation evaluates premium or a feature.
func (p *Provider) BooleanEvaluation(ctx context.Context, flag string, defaultValue bool, flatCtx openfeature.FlattenedContext) openfeature.BoolResolutionDetail {
	v, d := evaluateAs(ctx, p, flag, defaultValue, flatCtx)
	return openfeature.BoolResolutionDetail{Value: v, ProviderResolutionDetail: d}
}

// StringEvaluation evaluates status.
func (p *Provider) StringEvaluation(ctx context.Context, flag string, defaultValue string, flatCtx openfeature.FlattenedContext) openfeature.StringResolutionDetail {
	v, d := evaluateAs(ctx, p, flag, defaultValue, flatCtx)
	return openfeature.StringResolutionDetail{Value: v, ProviderResolutionDetail: d}
}

// IntEvaluation evaluates a limit.
func (p *Provider) IntEvaluation(ctx context.Context, flag string, defaultValue int64, flatCtx openfeature.FlattenedContext) openfeature.IntResolutionDetail {
	v, d := evaluateAs(ctx, p, flag, defaultValue, flatCtx)
	return openfeature.IntResolutionDetail{Value: v, ProviderResolutionDetail: d}
}

// FloatEvaluation evaluates a limit as a float.
func (p *Provider) FloatEvaluation(ctx context.Context, flag string, defaultValue float64, flatCtx openfeature.FlattenedContext) openfeature.FloatResolutionDetail {
	v, d := evaluateAs(ctx, p, flag, defaultValue, flatCtx)
	return openfeature.FloatResolutionDetail{Value: v, ProviderResolutionDetail: d}
}

// ObjectEvaluation evaluates any flag as its JSON value (bool, string or float64).
func (p *Provider) ObjectEvaluation(ctx context.Context, flag string, defaultValue any, flatCtx openfeature.FlattenedContext) openfeature.InterfaceResolutionDetail {
	v, d := evaluateAs(ctx, p, flag, defaultValue, flatCtx)
	return openfeature.InterfaceResolutionDetail{Value: v, ProviderResolutionDetail: d}
}

// evaluation is the query API's answer: an evaluation or a failure.
type evaluation struct {
	Key          string          `json:"key"`
	Value        json.RawMessage `json:"value"`
	Reason       string          `json:"reason"`
	Variant      string          `json:"variant"`
	Metadata     map[string]any  `json:"metadata"`
	ErrorCode    string          `json:"errorCode"`
	ErrorDetails string          `json:"errorDetails"`
}

// evaluateAs evaluates flag and decodes its value as T; on failure the detail carries the
// resolution error and reason ERROR, and the value is defaultValue (what the caller asked for).
func evaluateAs[T any](ctx context.Context, p *Provider, flag string, defaultValue T, flatCtx openfeature.FlattenedContext) (T, openfeature.ProviderResolutionDetail) {
	var zero T
	fail := func(e openfeature.ResolutionError) (T, openfeature.ProviderResolutionDetail) {
		return defaultValue, openfeature.ProviderResolutionDetail{ResolutionError: e, Reason: openfeature.ErrorReason}
	}
	ev, err := p.evaluate(ctx, flag, flatCtx)
	if err != nil {
		return fail(openfeature.NewGeneralResolutionError(err.Error()))
	}
	if ev.ErrorCode != "" {
		return fail(resolutionError(ev.ErrorCode, ev.ErrorDetails))
	}
	var v T
	dec := json.NewDecoder(bytes.NewReader(ev.Value))
	if err := dec.Decode(&v); err != nil || len(ev.Value) == 0 {
		return fail(openfeature.NewTypeMismatchResolutionError(fmt.Sprintf("flag %q is %s, not %T", flag, ev.Value, zero)))
	}
	return v, openfeature.ProviderResolutionDetail{Reason: openfeature.Reason(ev.Reason), Variant: ev.Variant,
		FlagMetadata: openfeature.FlagMetadata(ev.Metadata)}
}

// resolutionError is the SDK's error for an OFREP error code.
func resolutionError(code, details string) openfeature.ResolutionError {
	switch code {
	case string(openfeature.FlagNotFoundCode):
		return openfeature.NewFlagNotFoundResolutionError(details)
	case string(openfeature.TargetingKeyMissingCode):
		return openfeature.NewTargetingKeyMissingResolutionError(details)
	case string(openfeature.InvalidContextCode):
		return openfeature.NewInvalidContextResolutionError(details)
	case string(openfeature.ParseErrorCode):
		return openfeature.NewParseErrorResolutionError(details)
	}
	return openfeature.NewGeneralResolutionError(code + ": " + details)
}

// errUnexpected is an answer that is neither an evaluation nor an OFREP failure.
var errUnexpected = errors.New("unexpected answer from the query API")

// evaluate asks the query API for flag; an answer with an OFREP error code is not an error.
func (p *Provider) evaluate(ctx context.Context, flag string, flatCtx openfeature.FlattenedContext) (evaluation, error) {
	var ev evaluation
	body, err := json.Marshal(map[string]any{"context": p.context(flatCtx)})
	if err != nil {
		return ev, fmt.Errorf("encode the evaluation context: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/ofrep/v1/evaluate/flags/"+url.PathEscape(flag), bytes.NewReader(body))
	if err != nil {
		return ev, fmt.Errorf("build the request: %w", err)
	}
	req.Header.Set("Authorization", p.auth)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := p.httpClient.Do(req)
	if err != nil {
		return ev, fmt.Errorf("query API: %w", err)
	}
	defer func() { _ = resp.Body.Close() }() // read to the end below; nothing to lose
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return ev, fmt.Errorf("query API: read the answer: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusInternalServerError:
		if err := json.Unmarshal(data, &ev); err != nil {
			return ev, fmt.Errorf("%w: %d, not JSON", errUnexpected, resp.StatusCode)
		}
		if resp.StatusCode == http.StatusOK || ev.ErrorCode != "" {
			return ev, nil
		}
	case http.StatusUnauthorized:
		return ev, fmt.Errorf("query API: 401: the token is refused (QUERYAPI_TOKENS)")
	}
	return ev, fmt.Errorf("%w: %d %.200s", errUnexpected, resp.StatusCode, data)
}

// context is what the query API reads of an evaluation context: the targeting key, and the
// scope from the context or the provider's options. Other attributes stay in the process.
func (p *Provider) context(flat openfeature.FlattenedContext) map[string]any {
	out := make(map[string]any, 3)
	if k, ok := flat[openfeature.TargetingKey]; ok {
		out[openfeature.TargetingKey] = k
	}
	if v, ok := flat[AttrLivemode]; ok {
		out[AttrLivemode] = v
	} else if p.livemode != nil {
		out[AttrLivemode] = *p.livemode
	}
	if v, ok := flat[AttrAccount]; ok {
		out[AttrAccount] = v
	} else if p.account != nil {
		out[AttrAccount] = *p.account
	}
	return out
}
