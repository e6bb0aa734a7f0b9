package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/processortest"

	"github.com/tollgate/tollgate/processor/internal/admin"
	"github.com/tollgate/tollgate/processor/internal/operate"
	"github.com/tollgate/tollgate/processor/internal/projection"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/httpx"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/stripeevent"
)

func adminGet(tb testing.TB, h http.Handler, path, token string) (int, []byte) {
	tb.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(tb.Context(), http.MethodGet, path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

func TestTimeline(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	k := processortest.NewKit(t, "tl")
	events := k.Signup("cus_TL1", "u_tl", "sub_TL1", "price_1", processortest.T0)
	events = append(events, k.Signup("cus_TL2", "u_tl", "sub_TL2", "price_1", processortest.T0+100)...)
	events = append(events, k.Subscription("customer.subscription.deleted", "cus_TL1", "sub_TL1", "canceled", "price_1", processortest.T0+200, nil))
	b.Publish(t, events...)
	b.Start(t, processortest.TestOptions(), b.DB.URL)
	processortest.CaughtUp(t, b.DB.Pool, processortest.Expect(t, b.Rules, events...), 20*time.Second)

	h := admin.With(http.NotFoundHandler(), []config.AdminToken{{Name: "a", Token: "tok_a"}, {Name: "b", Token: "tok_b"}}, b.DB.Pool, &projection.Projector{DB: b.DB.Pool, Rules: b.Rules}, processortest.TestLogger(t))
	t.Run("unauthorized", func(t *testing.T) {
		for _, token := range []string{"", "wrong"} {
			code, body := adminGet(t, h, "/admin/v1/customers/cus_TL1/timeline", token)
			require.Equal(t, http.StatusUnauthorized, code)
			require.JSONEq(t, `{"error":{"code":"unauthorized","message":"a valid Authorization: Bearer token is required"}}`, string(body))
		}
	})
	t.Run("customer", func(t *testing.T) {
		code, body := adminGet(t, h, "/admin/v1/customers/cus_TL1/timeline", "tok_b")
		require.Equal(t, http.StatusOK, code, string(body))
		var tl operate.Timeline
		require.NoError(t, json.Unmarshal(body, &tl))
		require.Equal(t, "cus_TL1", tl.CustomerID)
		require.Equal(t, "u_tl", *tl.UserID)
		require.Len(t, tl.Events, 6) // every stored event, the invoice included
		seen := map[string]bool{}
		for _, e := range tl.Events {
			require.False(t, seen[e.ID], "event %s twice", e.ID)
			seen[e.ID] = true
			require.NotNil(t, e.ReceivedAt)
			require.NotEmpty(t, e.Why)
		}
		require.Equal(t, "sub_TL1 incomplete -> active: active grants access", tl.Events[3].Why)
		require.True(t, tl.Events[3].Changed)
		row, err := entitlement.GetCustomer(t.Context(), b.DB.Pool, scope.Key{ID: "cus_TL1"})
		require.NoError(t, err)
		last := tl.Events[len(tl.Events)-1].After
		require.Equal(t, operate.AnswerFields{Premium: row.Premium, Status: row.Status, Features: row.Features, UserID: &row.UserID}, last)
		require.False(t, last.Premium)
	})
	t.Run("user", func(t *testing.T) {
		code, body := adminGet(t, h, "/admin/v1/users/u_tl/timeline?livemode=false", "tok_a")
		require.Equal(t, http.StatusOK, code, string(body))
		var tl operate.Timeline
		require.NoError(t, json.Unmarshal(body, &tl))
		require.Equal(t, []string{"cus_TL1", "cus_TL2"}, tl.CustomerIDs)
		require.Len(t, tl.Events, 11)
		u, err := entitlement.GetUser(t.Context(), b.DB.Pool, scope.Key{ID: "u_tl"})
		require.NoError(t, err)
		last := tl.Events[len(tl.Events)-1]
		require.Equal(t, "cus_TL1", last.CustomerID)
		require.Equal(t, operate.AnswerFields{Premium: u.Premium, Status: u.Status, Features: u.Features, UserID: &u.UserID}, last.After)
		require.True(t, last.After.Premium) // cus_TL2 still pays
	})
	t.Run("read your writes marks", func(t *testing.T) {
		for _, tc := range []struct {
			id   string
			user bool
			key  string
			want bool
		}{
			{"cs_test_cus_TL1_sub_TL1", true, "u_tl", true},
			{"cs_test_cus_TL1_sub_TL1", false, "cus_TL1", true},
			{"cs_test_cus_TL1_sub_TL1", false, "cus_TL2", false},
			{"cs_test_nothing", true, "u_tl", false},
		} {
			ok, err := entitlement.Applied(t.Context(), b.DB.Pool, tc.id, tc.user, scope.Key{ID: tc.key})
			require.NoError(t, err)
			require.Equal(t, tc.want, ok, "%+v", tc)
		}
	})
	t.Run("errors", func(t *testing.T) {
		code, _ := adminGet(t, h, "/admin/v1/customers/cus_none/timeline", "tok_a")
		require.Equal(t, http.StatusNotFound, code)
		code, body := adminGet(t, h, "/admin/v1/users/u_tl/timeline?livemode=maybe", "tok_a")
		require.Equal(t, http.StatusBadRequest, code)
		require.Contains(t, string(body), "livemode")
		code, body = adminGet(t, h, "/admin/v1/nothing", "tok_a")
		require.Equal(t, http.StatusNotFound, code)
		require.JSONEq(t, `{"error":{"code":"not_found","message":"no such route"}}`, string(body))
	})
	t.Run("a method a route does not serve is 405 with Allow", func(t *testing.T) {
		for _, path := range []string{"/admin/v1/customers/cus_TL1/timeline", "/admin/v1/users/u_tl/timeline"} {
			for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
				rec := httptest.NewRecorder()
				req := httptest.NewRequestWithContext(t.Context(), method, path, nil)
				req.Header.Set("Authorization", "Bearer tok_a")
				h.ServeHTTP(rec, req)
				require.Equal(t, http.StatusMethodNotAllowed, rec.Code, "%s %s", method, path)
				require.Equal(t, "GET, HEAD", rec.Header().Get("Allow"))
				var body httpx.ErrorBody
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
				require.Equal(t, "method_not_allowed", body.Error.Code)
			}
		}
	})
	t.Run("explain command", func(t *testing.T) {
		var out strings.Builder
		env := map[string]string{"DATABASE_URL": b.DB.URL}
		require.NoError(t, run(t.Context(), []string{"explain", "--livemode=false", "u_tl"}, func(k string) string { return env[k] }, &out, io.Discard))
		for _, e := range events {
			ev, err := stripeevent.Parse(e)
			require.NoError(t, err)
			require.Contains(t, out.String(), ev.ID)
		}
		require.Contains(t, out.String(), "sub_TL1 incomplete -> active: active grants access")
	})
	t.Run("off without tokens", func(t *testing.T) {
		code, _ := adminGet(t, admin.With(http.NotFoundHandler(), nil, b.DB.Pool, &projection.Projector{DB: b.DB.Pool, Rules: b.Rules}, processortest.TestLogger(t)), "/admin/v1/customers/cus_TL1/timeline", "x")
		require.Equal(t, http.StatusNotFound, code)
	})
}
