package stripetest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// AddCustomer adds (or replaces) a customer object served by GET /v1/customers/{id}, such as
// {"id": "cus_1", "object": "customer", "metadata": {"user_id": "u_1"}}.
func (a *API) AddCustomer(tb testing.TB, obj map[string]any) {
	tb.Helper()
	a.addObject(tb, "/v1/customers/", obj)
}

// AddCheckoutSession adds (or replaces) a Checkout Session served by GET
// /v1/checkout/sessions/{id}, such as CheckoutIn builds.
func (a *API) AddCheckoutSession(tb testing.TB, obj map[string]any) {
	tb.Helper()
	a.addObject(tb, "/v1/checkout/sessions/", obj)
}

// AddActiveEntitlement adds an active entitlement of feature lookupKey to customer, listed by
// GET /v1/entitlements/active_entitlements?customer=… in the order added.
func (a *API) AddActiveEntitlement(tb testing.TB, customer, lookupKey string) {
	tb.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.entitlements == nil {
		a.entitlements = map[string][]apiObject{}
	}
	n := len(a.entitlements[customer])
	id := fmt.Sprintf("ent_test_%s_%d", strings.TrimPrefix(customer, "cus_"), n)
	raw, err := json.Marshal(map[string]any{"id": id, "object": "entitlements.active_entitlement",
		"feature": "feat_" + lookupKey, "livemode": false, "lookup_key": lookupKey})
	if err != nil {
		tb.Fatalf("stripetest: AddActiveEntitlement: %v", err)
	}
	// created descending is the list's order: the first added is the newest.
	a.entitlements[customer] = append(a.entitlements[customer], apiObject{id: id, created: int64(-n), raw: raw})
}

// AddV2Event makes a v2 event (raw, "object": "v2.core.event", with its data) retrievable at
// GET /v2/core/events/{id}, as Stripe serves the event behind a thin notification.
func (a *API) AddV2Event(tb testing.TB, raw []byte) {
	tb.Helper()
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		tb.Fatalf("stripetest: AddV2Event: %v", err)
	}
	a.addObject(tb, "/v2/core/events/", obj)
}

func (a *API) addObject(tb testing.TB, prefix string, obj map[string]any) {
	tb.Helper()
	id, _ := obj["id"].(string)
	if id == "" {
		tb.Fatalf("stripetest: the object needs an id")
	}
	raw, err := json.MarshalIndent(obj, "", "  ")
	if err != nil {
		tb.Fatalf("stripetest: %v", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.objects == nil {
		a.objects = map[string]json.RawMessage{}
	}
	a.objects[prefix+id] = raw
}

// retrieve answers the GET of one object by id; 404 resource_missing, as Stripe, when unknown.
func (a *API) retrieve(path string) (int, []byte, http.Header) {
	if id, ok := strings.CutPrefix(path, "/v1/subscriptions/"); ok {
		if i := slices.IndexFunc(a.subs, func(s apiObject) bool { return s.id == id }); i >= 0 {
			return http.StatusOK, a.subs[i].raw, nil
		}
		return apiError(http.StatusNotFound, "invalid_request_error", "resource_missing", "No such subscription: '"+id+"'")
	}
	if raw, ok := a.objects[path]; ok {
		return http.StatusOK, raw, nil
	}
	noun := "customer"
	if strings.HasPrefix(path, "/v1/checkout/sessions/") {
		noun = "checkout.session"
	}
	if strings.HasPrefix(path, "/v2/core/events/") {
		noun = "event"
	}
	return apiError(http.StatusNotFound, "invalid_request_error", "resource_missing",
		"No such "+noun+": '"+path[strings.LastIndexByte(path, '/')+1:]+"'")
}

// entitlementParams are the parameters GET /v1/entitlements/active_entitlements knows.
const entitlementParams = `^(limit|starting_after|ending_before|customer|expand\[\d*\])$`

// activeEntitlements answers GET /v1/entitlements/active_entitlements (customer is required).
func (a *API) activeEntitlements(q url.Values) (int, []byte, http.Header) {
	if q.Get("customer") == "" {
		return apiError(http.StatusBadRequest, "invalid_request_error", "parameter_missing", "Missing required param: customer.")
	}
	return a.list(q, "/v1/entitlements/active_entitlements", "active entitlement", a.entitlements[q.Get("customer")],
		regexp.MustCompile(entitlementParams), func(apiObject) (bool, string) { return true, "" })
}
