package stripeapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/form"

	"github.com/tollgate/tollgate/pkg/repair"
)

// ErrObjectNotFound is wrapped by objectReader errors for an object Stripe does not have (404).
var ErrObjectNotFound = errors.New("no such object in Stripe")

// objectPaths are the API paths of the objects a repair reads.
func objectPath(objectType, id string) (string, bool) {
	base := map[string]string{
		repair.ObjectSubscription:    "/v1/subscriptions/",
		repair.ObjectCustomer:        "/v1/customers/",
		repair.ObjectCheckoutSession: "/v1/checkout/sessions/",
		repair.ObjectEvent:           "/v2/core/events/",
	}[objectType]
	return base + url.PathEscape(id), base != ""
}

// Object implements objectReader.
func (a *API) Object(ctx context.Context, objectType, id, account string) (json.RawMessage, error) {
	path, ok := objectPath(objectType, id)
	if !ok {
		return nil, fmt.Errorf("read %s %s: not an object Tollgate reads", objectType, id)
	}
	params := a.params(ctx, account)
	if objectType == repair.ObjectEvent {
		params = v2Params(ctx, account)
	}
	var v rawObject
	if err := a.backend.CallRaw(http.MethodGet, path, a.key, nil, params, &v); err != nil {
		return nil, apiReadError("read "+objectType+" "+id, err)
	}
	return json.RawMessage(v.LastResponse.RawJSON), nil
}

// V2APIVersion is the Stripe-Version of the v2 requests (GET /v2/core/events/{id}): stripe-go
// v76 pins 2023-10-16, older than the v2 API (2024-09-30.acacia); a thin event's own payload is
// unversioned, so any version that serves v2 reads it the same.
const V2APIVersion = "2025-09-30.clover"

// v2Params are the parameters of a v2 request: its API version, and a connected account named
// by Stripe-Context (the v2 API's header; Stripe-Account is v1's).
func v2Params(ctx context.Context, account string) *stripe.Params {
	p := &stripe.Params{Context: ctx, Headers: http.Header{"Stripe-Version": {V2APIVersion}}}
	if account != "" {
		p.Headers.Set("Stripe-Context", account)
	}
	return p
}

// ActiveEntitlements implements objectReader.
func (a *API) ActiveEntitlements(ctx context.Context, customer, account string) ([]json.RawMessage, error) {
	values := &form.Values{}
	values.Add("customer", customer)
	return a.listAll(ctx, "/v1/entitlements/active_entitlements", values, account, "active entitlements of "+customer)
}

// CustomerSubscriptions implements objectReader.
func (a *API) CustomerSubscriptions(ctx context.Context, customer, account string) ([]json.RawMessage, error) {
	values := &form.Values{}
	if strings.HasPrefix(customer, "acct_") {
		values.Add("customer_account", customer) // Accounts v2
	} else {
		values.Add("customer", customer)
	}
	values.Add("status", "all")
	return a.listAll(ctx, "/v1/subscriptions", values, account, "subscriptions of "+customer)
}

// listAll reads every page of a list, its items undecoded.
func (a *API) listAll(ctx context.Context, path string, filters *form.Values, account, what string) ([]json.RawMessage, error) {
	var all []json.RawMessage
	for after := ""; ; {
		values := &form.Values{}
		for k, vs := range filters.ToValues() {
			for _, v := range vs {
				values.Add(k, v)
			}
		}
		values.Add("limit", fmt.Sprint(PageSize))
		if after != "" {
			values.Add("starting_after", after)
		}
		page := &rawList{}
		if err := a.backend.CallRaw(http.MethodGet, path, a.key, values, a.params(ctx, account), page); err != nil {
			return nil, apiReadError("list "+what, err)
		}
		all = append(all, page.Data...)
		if !page.HasMore || len(page.Data) == 0 {
			return all, nil
		}
		after = IDOf(page.Data[len(page.Data)-1])
	}
}

func (a *API) params(ctx context.Context, account string) *stripe.Params {
	p := &stripe.Params{Context: ctx}
	if account != "" {
		p.StripeAccount = stripe.String(account)
	}
	return p
}

// rawObject is an answer kept as its raw JSON (LastResponse.RawJSON).
type rawObject struct {
	stripe.APIResource
}

func apiReadError(what string, err error) error {
	var se *stripe.Error
	if errors.As(err, &se) && se.HTTPStatusCode == http.StatusNotFound {
		return fmt.Errorf("%s: %w: %w", what, ErrObjectNotFound, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
