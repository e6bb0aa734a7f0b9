package main

import (
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/httpx"
)

// openAPI is the part of the document the tests read.
type openAPI struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas map[string]*schema `json:"schemas"`
	} `json:"components"`
}

type schema struct {
	Ref        string             `json:"$ref"`
	Type       string             `json:"type"`
	Format     string             `json:"format"`
	Nullable   bool               `json:"nullable"`
	Required   []string           `json:"required"`
	Properties map[string]*schema `json:"properties"`
	Items      *schema            `json:"items"`
}

func loadOpenAPI(t *testing.T) openAPI {
	t.Helper()
	b := startInstance(t, nil, "postgres://postgres@127.0.0.1:1/nowhere?connect_timeout=1")
	rec := b.get(t, "/openapi.json", "")
	require.Equal(t, http.StatusOK, rec.Code, "served without a token")
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var doc openAPI
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &doc))
	require.True(t, strings.HasPrefix(doc.OpenAPI, "3."))
	return doc
}

func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	b := startInstance(t, nil, "postgres://postgres@127.0.0.1:1/nowhere?connect_timeout=1")
	param := regexp.MustCompile(`:([a-z_]+)`)
	var routes int
	for _, r := range b.app.handler.Routes() {
		if r.Method == echo.RouteNotFound { // the group's catch-all that makes /v1/* answer 401
			continue
		}
		path := param.ReplaceAllString(r.Path, "{$1}")
		ops, ok := doc.Paths[path]
		require.True(t, ok, "route %s %s is not in openapi.json", r.Method, path)
		require.Contains(t, ops, strings.ToLower(r.Method), "route %s %s is not in openapi.json", r.Method, path)
		routes++
	}
	require.Positive(t, routes)
	var documented int
	for _, ops := range doc.Paths {
		documented += len(ops)
	}
	require.Equal(t, routes, documented, "openapi.json documents a route the router does not have")
}

func TestOpenAPIDocumentsEveryField(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	s := doc.Components.Schemas
	requireSchemaMatches(t, s, "Entitlement", reflect.TypeFor[entitlement.Answer]())
	requireSchemaMatches(t, s, "Subscription", reflect.TypeFor[entitlement.Subscription]())
	requireSchemaMatches(t, s, "Error", reflect.TypeFor[httpx.ErrorBody]())
	requireSchemaMatches(t, s, "Ready", reflect.TypeFor[readyBody]())
}

// requireSchemaMatches checks, both ways, that the schema has exactly the JSON fields of typ
// with matching types, nullability and required-ness (omitempty fields are optional).
func requireSchemaMatches(t *testing.T, schemas map[string]*schema, name string, typ reflect.Type) {
	t.Helper()
	sc, ok := schemas[name]
	require.True(t, ok, "schema %s is missing", name)
	fields := jsonFields(typ)
	props := make([]string, 0, len(sc.Properties))
	for p := range sc.Properties {
		props = append(props, p)
	}
	want := make([]string, 0, len(fields))
	var required []string
	for _, f := range fields {
		want = append(want, f.name)
		if !f.omitempty {
			required = append(required, f.name)
		}
	}
	require.ElementsMatch(t, want, props, "schema %s: properties differ from the Go type's JSON fields", name)
	require.ElementsMatch(t, required, sc.Required, "schema %s: required differs from the non-omitempty fields", name)

	for _, f := range fields {
		p := sc.Properties[f.name]
		if p.Ref != "" {
			ref := strings.TrimPrefix(p.Ref, "#/components/schemas/")
			requireSchemaMatches(t, schemas, ref, deref(f.typ))
			continue
		}
		require.Equal(t, f.typ.Kind() == reflect.Pointer, p.Nullable, "%s.%s: nullable iff a pointer", name, f.name)
		ft := deref(f.typ)
		switch {
		case ft == reflect.TypeFor[time.Time]():
			require.Equal(t, "string", p.Type, "%s.%s", name, f.name)
			require.Equal(t, "date-time", p.Format, "%s.%s", name, f.name)
		case ft.Kind() == reflect.String:
			require.Equal(t, "string", p.Type, "%s.%s", name, f.name)
		case ft.Kind() == reflect.Bool:
			require.Equal(t, "boolean", p.Type, "%s.%s", name, f.name)
		case ft.Kind() >= reflect.Int && ft.Kind() <= reflect.Uint64:
			require.Equal(t, "integer", p.Type, "%s.%s", name, f.name)
		case ft.Kind() == reflect.Slice:
			require.Equal(t, "array", p.Type, "%s.%s", name, f.name)
			require.NotNil(t, p.Items, "%s.%s", name, f.name)
			if ft.Elem().Kind() == reflect.Struct {
				require.NotEmpty(t, p.Items.Ref, "%s.%s", name, f.name)
				requireSchemaMatches(t, schemas, strings.TrimPrefix(p.Items.Ref, "#/components/schemas/"), ft.Elem())
			} else {
				require.Equal(t, "string", p.Items.Type, "%s.%s", name, f.name)
			}
		case ft.Kind() == reflect.Struct:
			require.Equal(t, "object", p.Type, "%s.%s", name, f.name)
			nested := &schema{Properties: p.Properties, Required: p.Required}
			sub := map[string]*schema{name + "." + f.name: nested}
			for k, v := range schemas {
				sub[k] = v
			}
			requireSchemaMatches(t, sub, name+"."+f.name, ft)
		default:
			t.Fatalf("%s.%s: no rule for %s", name, f.name, ft)
		}
	}
}

type jsonField struct {
	name      string
	typ       reflect.Type
	omitempty bool
}

// jsonFields are the JSON fields of a struct as encoding/json sees them, embedded structs
// flattened.
func jsonFields(typ reflect.Type) []jsonField {
	var out []jsonField
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() {
			continue
		}
		if f.Anonymous && tag == "" {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		out = append(out, jsonField{name: name, typ: f.Type, omitempty: strings.Contains(opts, "omitempty")})
	}
	return out
}

func deref(t reflect.Type) reflect.Type {
	if t.Kind() == reflect.Pointer {
		return t.Elem()
	}
	return t
}

// Both entitlement operations document the scope parameters the handlers read.
func TestOpenAPIDocumentsTheScopeParameters(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	for _, path := range []string{"/v1/users/{user_id}/entitlement", "/v1/customers/{customer_id}/entitlement"} {
		var op struct {
			Parameters []struct {
				Ref string `json:"$ref"`
			} `json:"parameters"`
		}
		require.NoError(t, json.Unmarshal(doc.Paths[path]["get"], &op), path)
		var refs []string
		for _, p := range op.Parameters {
			refs = append(refs, p.Ref)
		}
		require.Subset(t, refs, []string{"#/components/parameters/Livemode", "#/components/parameters/Account"}, path)
	}
}
