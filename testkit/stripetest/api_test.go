package stripetest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/testkit/stripetest"
)

const apiKey = "rk_test_fake_api"

type listAnswer struct {
	Object  string            `json:"object"`
	Data    []json.RawMessage `json:"data"`
	HasMore bool              `json:"has_more"`
	URL     string            `json:"url"`
}

func apiGet(t *testing.T, a *stripetest.API, key, path string, q url.Values) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, a.URL+path+"?"+q.Encode(), nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, b
}

func list(t *testing.T, a *stripetest.API, path string, q url.Values) listAnswer {
	t.Helper()
	status, _, body := apiGet(t, a, apiKey, path, q)
	require.Equal(t, http.StatusOK, status, string(body))
	var l listAnswer
	require.NoError(t, json.Unmarshal(body, &l))
	require.Equal(t, "list", l.Object)
	require.Equal(t, path, l.URL)
	return l
}

func ids(t *testing.T, raws []json.RawMessage) []string {
	t.Helper()
	out := make([]string, 0, len(raws))
	for _, raw := range raws {
		var o struct {
			ID string `json:"id"`
		}
		require.NoError(t, json.Unmarshal(raw, &o))
		out = append(out, o.ID)
	}
	return out
}

// events adds evt_1 … evt_n, created 1000+i (evt_n newest); odd ones were delivered.
func events(t *testing.T, a *stripetest.API, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		typ := "customer.subscription.updated"
		if i%3 == 0 {
			typ = "invoice.paid"
		}
		a.AddEvent(t, stripetest.Event{ID: fmt.Sprintf("evt_%d", i), Type: typ, Created: int64(1000 + i)}.JSON(t), i%2 == 1)
	}
}

func TestAPIPaginatesEventsNewestFirst(t *testing.T) {
	t.Parallel()
	a := stripetest.NewAPI(t, apiKey, stripetest.Faults{})
	events(t, a, 25)

	var got []string
	q := url.Values{"limit": {"10"}}
	for pages := 1; ; pages++ {
		l := list(t, a, "/v1/events", q)
		got = append(got, ids(t, l.Data)...)
		if !l.HasMore {
			require.Equal(t, 3, pages)
			break
		}
		q.Set("starting_after", got[len(got)-1])
	}
	require.Len(t, got, 25)
	require.Equal(t, "evt_25", got[0])
	require.Equal(t, "evt_1", got[24])

	for _, raw := range list(t, a, "/v1/events", url.Values{"limit": {"1"}}).Data {
		_, err := stripeevent.Parse(raw)
		require.NoError(t, err, "items are the events' JSON")
	}
	require.Len(t, list(t, a, "/v1/events", nil).Data, 10, "default limit")
}

func TestAPIFiltersEvents(t *testing.T) {
	t.Parallel()
	a := stripetest.NewAPI(t, apiKey, stripetest.Faults{})
	events(t, a, 12)
	tests := []struct {
		name string
		q    url.Values
		want []string
	}{
		{"created range", url.Values{"created[gte]": {"1003"}, "created[lte]": {"1005"}}, []string{"evt_5", "evt_4", "evt_3"}},
		{"created gt lt", url.Values{"created[gt]": {"1003"}, "created[lt]": {"1005"}}, []string{"evt_4"}},
		{"undelivered", url.Values{"delivery_success": {"false"}, "created[lte]": {"1006"}}, []string{"evt_6", "evt_4", "evt_2"}},
		{"types[]", url.Values{"types[]": {"invoice.paid"}}, []string{"evt_12", "evt_9", "evt_6", "evt_3"}},
		{"stripe-go's types[0]", url.Values{"types[0]": {"invoice.paid"}, "types[1]": {"nothing.else"}}, []string{"evt_12", "evt_9", "evt_6", "evt_3"}},
		{"type with wildcard", url.Values{"type": {"invoice.*"}, "created[gte]": {"1009"}}, []string{"evt_12", "evt_9"}},
		{"starting_after with filters", url.Values{"starting_after": {"evt_10"}, "types[]": {"invoice.paid"}}, []string{"evt_9", "evt_6", "evt_3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.q.Set("limit", "100")
			require.Equal(t, tt.want, ids(t, list(t, a, "/v1/events", tt.q).Data))
		})
	}
}

func TestAPIListsSubscriptions(t *testing.T) {
	t.Parallel()
	a := stripetest.NewAPI(t, apiKey, stripetest.Faults{})
	a.AddSubscription(t, stripetest.Subscription("sub_1", "cus_1", "active", "price_1"), 100)
	a.AddSubscription(t, stripetest.Subscription("sub_2", "cus_1", "canceled", "price_1"), 200)
	a.AddSubscription(t, stripetest.Subscription("sub_3", "cus_2", "past_due", "price_1"), 300)

	require.Equal(t, []string{"sub_3", "sub_1"}, ids(t, list(t, a, "/v1/subscriptions", nil).Data), "not canceled by default")
	require.Equal(t, []string{"sub_3", "sub_2", "sub_1"}, ids(t, list(t, a, "/v1/subscriptions", url.Values{"status": {"all"}}).Data))
	require.Equal(t, []string{"sub_2", "sub_1"}, ids(t, list(t, a, "/v1/subscriptions", url.Values{"status": {"all"}, "customer": {"cus_1"}}).Data))
	l := list(t, a, "/v1/subscriptions", url.Values{"status": {"all"}, "limit": {"2"}})
	require.True(t, l.HasMore)
	l = list(t, a, "/v1/subscriptions", url.Values{"status": {"all"}, "limit": {"2"}, "starting_after": {"sub_2"}})
	require.Equal(t, []string{"sub_1"}, ids(t, l.Data))
	require.False(t, l.HasMore)
}

func TestAPIRefusesAsStripeDoes(t *testing.T) {
	t.Parallel()
	a := stripetest.NewAPI(t, apiKey, stripetest.Faults{})
	events(t, a, 3)
	tests := []struct {
		name   string
		key    string
		path   string
		q      url.Values
		status int
		want   string
	}{
		{"wrong key", "sk_test_someone_else", "/v1/events", nil, 401, "Invalid API Key provided"},
		{"unknown parameter", apiKey, "/v1/events", url.Values{"delivered": {"false"}}, 400, "Received unknown parameter: delivered"},
		{"limit too large", apiKey, "/v1/events", url.Values{"limit": {"101"}}, 400, "limit must be between 1 and 100"},
		{"unknown cursor", apiKey, "/v1/events", url.Values{"starting_after": {"evt_nope"}}, 400, "No such event: 'evt_nope'"},
		{"type and types", apiKey, "/v1/events", url.Values{"type": {"a"}, "types[]": {"b"}}, 400, "either type or types"},
		{"bad status", apiKey, "/v1/subscriptions", url.Values{"status": {"alive"}}, 400, "Invalid status"},
		{"unknown path", apiKey, "/v1/charges", nil, 404, "Unrecognized request URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, _, body := apiGet(t, a, tt.key, tt.path, tt.q)
			require.Equal(t, tt.status, status)
			var e struct {
				Error struct {
					Type    string `json:"type"`
					Message string `json:"message"`
				} `json:"error"`
			}
			require.NoError(t, json.Unmarshal(body, &e))
			require.Equal(t, "invalid_request_error", e.Error.Type)
			require.Contains(t, e.Error.Message, tt.want)
		})
	}
}

func TestAPIFaults(t *testing.T) {
	t.Parallel()
	a := stripetest.NewAPI(t, apiKey, stripetest.Faults{Every429: 3, Every500: 2, RetryAfter: 7})
	var statuses []int
	for range 6 {
		status, header, _ := apiGet(t, a, apiKey, "/v1/events", nil)
		statuses = append(statuses, status)
		if status == http.StatusTooManyRequests {
			require.Equal(t, "7", header.Get("Retry-After"))
		}
	}
	require.Equal(t, []int{200, 500, 429, 500, 200, 429}, statuses)
	require.Equal(t, 6, a.Served())
	reqs := a.Requests()
	require.Len(t, reqs, 6)
	require.Equal(t, "/v1/events", reqs[0].Path)
	require.Equal(t, 429, reqs[5].Status)

	down := stripetest.NewAPI(t, apiKey, stripetest.Faults{DownAfter: 2})
	statuses = nil
	for range 4 {
		status, _, _ := apiGet(t, down, apiKey, "/v1/events", nil)
		statuses = append(statuses, status)
	}
	require.Equal(t, []int{200, 200, 500, 500}, statuses)
}
