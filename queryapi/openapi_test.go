package main

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
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
	// AdditionalProperties is false on a closed object, a schema on a map.
	AdditionalProperties json.RawMessage `json:"additionalProperties"`
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
		if r.Method == echo.RouteNotFound || isNotAllowed(r) { // the group's catch-all that makes /v1/* answer 401; 405s
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
	requireSchemaMatches(t, s, "OFREPMetadata", reflect.TypeFor[flagMetadata]())
	requireSchemaMatches(t, s, "OFREPFailure", reflect.TypeFor[ofrepFailure]())
	// An evaluation's value is a boolean, a string or an integer (oneOf): its fields by name.
	var names []string
	for _, f := range jsonFields(reflect.TypeFor[flagEvaluation]()) {
		names = append(names, f.name)
	}
	require.ElementsMatch(t, names, s["OFREPEvaluation"].Required)
	require.Len(t, s["OFREPEvaluation"].Properties, len(names))
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
		case ft.Kind() == reflect.Map && ft.Key().Kind() == reflect.String && ft.Elem().Kind() >= reflect.Int && ft.Elem().Kind() <= reflect.Int64:
			require.Equal(t, "object", p.Type, "%s.%s", name, f.name)
			var values schema
			require.NoError(t, json.Unmarshal(p.AdditionalProperties, &values), "%s.%s: additionalProperties names the values' schema", name, f.name)
			require.Equal(t, "integer", values.Type, "%s.%s", name, f.name)
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

// Both entitlement operations document exactly the query parameters the handlers read (found in
// the package's source, so a new one fails here until it is documented and given a row), and the
// handlers refuse an invalid value of each with 400 invalid_parameter naming it.
func TestOpenAPIDocumentsEveryQueryParameter(t *testing.T) {
	t.Parallel()
	// Each parameter the handlers accept, with a query they refuse because of it.
	params := []struct{ name, invalid string }{
		{"livemode", "livemode=maybe"},
		{"account", "account=cus_123"},
		{"wait_for", "wait_for=sub_123"},
		{"timeout", "wait_for=evt_123&timeout=11s"},
	}
	names := make([]string, len(params))
	for i, p := range params {
		names[i] = p.name
	}
	require.ElementsMatch(t, handlerQueryParameters(t), names, "the query parameters the code reads: give each a row here and a parameter in openapi.json")

	doc := loadOpenAPI(t)
	var raw struct {
		Components struct {
			Parameters map[string]openAPIParameter `json:"parameters"`
			Responses  map[string]struct {
				Headers map[string]json.RawMessage `json:"headers"`
			} `json:"responses"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal(openAPIDocument, &raw))
	b := startInstance(t, nil, "postgres://postgres@127.0.0.1:1/nowhere?connect_timeout=1")
	for _, path := range []string{"/v1/users/{user_id}/entitlement", "/v1/customers/{customer_id}/entitlement"} {
		var op struct {
			Parameters []openAPIParameter `json:"parameters"`
			Responses  map[string]struct {
				Ref string `json:"$ref"`
			} `json:"responses"`
		}
		require.NoError(t, json.Unmarshal(doc.Paths[path]["get"], &op), path)
		var documented []string
		for _, p := range op.Parameters {
			if p.Ref != "" {
				ref, ok := raw.Components.Parameters[strings.TrimPrefix(p.Ref, "#/components/parameters/")]
				require.True(t, ok, "%s: no parameter %s", path, p.Ref)
				p = ref
			}
			if p.In != "query" {
				continue
			}
			require.False(t, p.Required, "%s: %s is optional", path, p.Name)
			require.NotEmpty(t, p.Description, "%s: %s", path, p.Name)
			require.NotEmpty(t, p.Schema, "%s: %s", path, p.Name)
			documented = append(documented, p.Name)
		}
		require.ElementsMatch(t, names, documented, "%s: the documented query parameters", path)

		// The answers wait_for adds: Tollgate-Wait on 200 and 404, 400 for a bad value, 503 with
		// Retry-After past the waiters' bound (TestWaitForIsBounded).
		headers := func(status string) map[string]json.RawMessage {
			r, ok := op.Responses[status]
			require.True(t, ok, "%s: no %s answer", path, status)
			return raw.Components.Responses[strings.TrimPrefix(r.Ref, "#/components/responses/")].Headers
		}
		require.Contains(t, headers("200"), waitHeader, path)
		require.Contains(t, headers("404"), waitHeader, path)
		require.Contains(t, headers("503"), "Retry-After", path)
		headers("400")

		for _, p := range params {
			url := strings.NewReplacer("{user_id}", "u_1", "{customer_id}", "cus_1").Replace(path) + "?" + p.invalid
			rec := b.get(t, url, testToken)
			require.Equal(t, http.StatusBadRequest, rec.Code, url)
			var body httpx.ErrorBody
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), url)
			require.Equal(t, "invalid_parameter", body.Error.Code, url)
			require.Contains(t, body.Error.Message, p.name, url)
		}
	}
}

// openAPIParameter is a parameter object, or a $ref to one.
type openAPIParameter struct {
	Ref         string          `json:"$ref"`
	Name        string          `json:"name"`
	In          string          `json:"in"`
	Required    bool            `json:"required"`
	Description string          `json:"description"`
	Schema      json.RawMessage `json:"schema"`
}

// handlerQueryParameters are the query parameter names the package's (non-test) source reads:
// the literals of c.QueryParam("…"), and the literal keys of q["…"], q.Get("…") and q.Has("…")
// where q is assigned from c.QueryParams() or r.URL.Query() in the same function.
func handlerQueryParameters(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	fset := token.NewFileSet()
	seen := map[string]bool{}
	literal := func(e ast.Expr) (string, bool) {
		lit, ok := e.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return "", false
		}
		v, err := strconv.Unquote(lit.Value)
		return v, err == nil
	}
	isValuesCall := func(e ast.Expr) bool {
		call, ok := e.(*ast.CallExpr)
		if !ok {
			return false
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		return ok && (sel.Sel.Name == "QueryParams" || sel.Sel.Name == "Query")
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			values := map[string]bool{} // the function's variables holding the query
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				if as, ok := n.(*ast.AssignStmt); ok && len(as.Lhs) == len(as.Rhs) {
					for i, rhs := range as.Rhs {
						if id, ok := as.Lhs[i].(*ast.Ident); ok && isValuesCall(rhs) {
							values[id.Name] = true
						}
					}
				}
				return true
			})
			isValues := func(e ast.Expr) bool {
				id, ok := e.(*ast.Ident)
				return isValuesCall(e) || ok && values[id.Name]
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.CallExpr:
					sel, ok := n.Fun.(*ast.SelectorExpr)
					if !ok || len(n.Args) != 1 {
						break
					}
					if sel.Sel.Name == "QueryParam" || (sel.Sel.Name == "Get" || sel.Sel.Name == "Has") && isValues(sel.X) {
						if v, ok := literal(n.Args[0]); ok {
							seen[v] = true
						}
					}
				case *ast.IndexExpr:
					if isValues(n.X) {
						if v, ok := literal(n.Index); ok {
							seen[v] = true
						}
					}
				}
				return true
			})
		}
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	return out
}
