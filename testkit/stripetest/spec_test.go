package stripetest_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/stripetest"
)

// specShapes is pkg/testdata/stripe-openapi/shapes.json: per API version, the JSON kinds
// stripe/openapi gives each field ("absent": not in that version's object).
type specShapes struct {
	Versions map[string]struct {
		OpenAPITag string                         `json:"openapi_tag"`
		Objects    map[string]map[string][]string `json:"objects"`
		Enums      map[string][]string            `json:"enums"`
	} `json:"versions"`
	V2 struct {
		Notification         map[string][]string            `json:"notification"`
		Reason               map[string][]string            `json:"reason"`
		RelatedObject        map[string][]string            `json:"related_object"`
		WithRelatedObject    []string                       `json:"with_related_object"`
		WithoutRelatedObject []string                       `json:"without_related_object"`
		EventData            map[string]map[string][]string `json:"event_data"`
	} `json:"v2"`
}

func loadShapes(t *testing.T) specShapes {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stripetest.FixtureDir(t), "..", "stripe-openapi", "shapes.json"))
	require.NoError(t, err)
	var s specShapes
	require.NoError(t, json.Unmarshal(b, &s))
	require.NotEmpty(t, s.Versions)
	return s
}

// decoderReads are the fields of each object that pkg/stripeevent and pkg/subscription read
// (Decode skips every other one). Each must be in the digest of every version, so that a
// field the decoder comes to read is checked against the spec too.
var decoderReads = map[string][]string{ //nolint:gochecknoglobals // a test table
	"subscription": {"id", "object", "customer", "customer_account", "status", "cancel_at_period_end", "current_period_end",
		"trial_end", "ended_at", "cancel_at", "canceled_at", "latest_invoice", "pause_collection", "items", "items.data",
		"items.data[].price", "items.data[].price.id", "items.data[].price.product", "items.data[].current_period_end", "plan"},
	"checkout.session": {"id", "object", "customer", "customer_account", "mode", "status", "client_reference_id", "subscription"},
	"invoice":          {"id", "object", "customer", "customer_account", "parent.subscription_details.subscription"},
	"entitlements.active_entitlement_summary": {"object", "customer", "entitlements.data[].lookup_key", "entitlements.has_more"},
}

// specVersion is the newest digested version at or before version ("" before the first):
// the endive releases are held to 2026-07-29.dahlia, the newest spec at hand.
func specVersion(s specShapes, version string) string {
	var keys []string
	for k := range s.Versions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	got := ""
	for _, k := range keys {
		if k[:10] <= version[:10] {
			got = k
		}
	}
	return got
}

// kind is the JSON kind of v as the digest names it.
func kind(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if _, err := time.Parse(time.RFC3339Nano, x); err == nil && strings.Contains(x, "T") {
			return "date-time"
		}
		return "string"
	case bool:
		return "boolean"
	case float64, int, int64, json.Number:
		return "integer"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return "unknown"
}

// values are the values at path in obj ("a.b", "a[].b" over each element), with whether the
// path reached any value; a missing member, or one under a null, is absent.
func values(obj any, path string) ([]any, bool) {
	cur := []any{obj}
	for part := range strings.SplitSeq(path, ".") {
		each := strings.HasSuffix(part, "[]")
		part = strings.TrimSuffix(part, "[]")
		var next []any
		for _, c := range cur {
			m, ok := c.(map[string]any)
			if !ok {
				continue
			}
			v, ok := m[part]
			if !ok {
				continue
			}
			if each {
				arr, _ := v.([]any)
				next = append(next, arr...)
			} else {
				next = append(next, v)
			}
		}
		cur = next
	}
	return cur, len(cur) > 0
}

// checkShape fails where obj has a field in a kind the spec does not give it, or has one the
// spec says is absent. A field the builders leave out is fine: they are minimal objects.
func checkShape(t *testing.T, what string, obj any, fields map[string][]string) {
	t.Helper()
	roundTrip, err := json.Marshal(obj)
	require.NoError(t, err)
	var o any
	require.NoError(t, json.Unmarshal(roundTrip, &o))
	for path, kinds := range fields {
		vs, ok := values(o, path)
		if !ok {
			continue
		}
		for _, v := range vs {
			require.Contains(t, kinds, kind(v), "%s: %s is %s; the spec gives %v", what, path, kind(v), kinds)
		}
	}
}

// TestShapesFollowTheSpec holds SubscriptionIn and CheckoutIn, for every API version from
// clover on, to the kinds stripe/openapi gives each field in that version (shapes.json), and
// holds the digest to covering every field the decoder reads.
func TestShapesFollowTheSpec(t *testing.T) {
	t.Parallel()
	shapes := loadShapes(t)
	for v, spec := range shapes.Versions {
		for object, reads := range decoderReads {
			fields, ok := spec.Objects[object]
			require.True(t, ok, "%s (openapi %s) digests %s", v, spec.OpenAPITag, object)
			for _, f := range reads {
				require.Contains(t, fields, f, "%s: the decoder reads %s.%s; the digest must say what the spec gives it", v, object, f)
			}
		}
	}
	checked := 0
	for _, version := range stripetest.APIVersions() {
		sv := specVersion(shapes, version)
		if sv == "" {
			continue // before the first digested spec
		}
		checked++
		spec := shapes.Versions[sv]
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			owners := [][2]string{{"cus_Spec", ""}}
			if stripetest.AccountsV2(version) {
				owners = append(owners, [2]string{"", "acct_1Spec"})
			}
			for _, o := range owners {
				for _, status := range []string{"active", "canceled"} {
					sub := stripetest.SubscriptionIn(version, "sub_1Spec", o[0], o[1], status, "price_1Spec", 1795000000)
					checkShape(t, version+" subscription", sub, spec.Objects["subscription"])
					require.Contains(t, spec.Enums["subscription.status"], sub["status"])
					if bm, ok := sub["billing_mode"].(map[string]any); ok {
						require.Contains(t, spec.Enums["subscription.billing_mode.type"], bm["type"])
					}
					if cd, ok := sub["cancellation_details"].(map[string]any); ok && cd["reason"] != nil {
						require.Contains(t, spec.Enums["subscription.cancellation_details.reason"], cd["reason"], "%s (spec %s)", version, sv)
					}
				}
				cs := stripetest.CheckoutIn(version, "cs_test_Spec", o[0], o[1], "user_spec", "sub_1Spec")
				checkShape(t, version+" checkout.session", cs, spec.Objects["checkout.session"])
				if m, ok := cs["ui_mode"].(string); ok {
					require.Contains(t, spec.Enums["checkout.session.ui_mode"], m, "%s (spec %s)", version, sv)
				}
			}
		})
	}
	require.Positive(t, checked)
}

// TestThinFixturesFollowTheSpec holds the committed thin events to the v2 Event shapes of
// Stripe's spec: the notification's members and kinds, related_object only on the events that
// have one, and the data of a retrieved event generation failure.
func TestThinFixturesFollowTheSpec(t *testing.T) {
	t.Parallel()
	v2 := loadShapes(t).V2
	files, err := filepath.Glob(filepath.Join(stripetest.FixtureDir(t), "v2", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(file)
			require.NoError(t, err)
			var ev map[string]any
			require.NoError(t, json.Unmarshal(b, &ev))
			typ, _ := ev["type"].(string)
			require.Equal(t, "v2.core.event", ev["object"])
			allowed := map[string][]string{}
			for k, v := range v2.Notification {
				allowed[k] = v
			}
			switch {
			case slices.Contains(v2.WithRelatedObject, typ):
				allowed["related_object"] = []string{"object"}
				require.Contains(t, ev, "related_object", "%s names its object", typ)
				for k, v := range v2.RelatedObject {
					allowed["related_object."+k] = v
				}
			case slices.Contains(v2.WithoutRelatedObject, typ):
				require.NotContains(t, ev, "related_object", "%s names its object in data.impact, not at the top level", typ)
			default:
				t.Fatalf("%s: a type the digest does not know", typ)
			}
			if data, ok := v2.EventData[typ]; ok && ev["data"] != nil {
				allowed["data"] = []string{"object"}
				for k, v := range data {
					allowed["data."+k] = v
				}
			}
			for k := range ev {
				require.Contains(t, allowed, k, "%s: %s is not a member of a v2 event of this type", typ, k)
			}
			if r, ok := ev["reason"].(map[string]any); ok {
				checkShape(t, typ+" reason", r, v2.Reason)
			}
			checkShape(t, typ, ev, allowed)
			for k, kinds := range allowed {
				if !slices.Contains(kinds, "absent") && !strings.Contains(k, ".") && (k != "data" && k != "related_object") {
					require.Contains(t, ev, k, "%s: the spec requires %s", typ, k)
				}
			}
		})
	}
}
