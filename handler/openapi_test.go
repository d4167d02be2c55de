package handler_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"seckill/handler"
	"seckill/handler/contract"
)

const (
	specAdmin  = "openapi-admin-token"
	specSecret = "openapi-jwt-secret-0123456789"
)

// specUndocumented lists the routes deliberately left out of openapi.yaml,
// as "METHOD /path". Empty: every route is documented.
var specUndocumented = []string{}

// httpMethods are the operation keys of an OpenAPI path item.
var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// loadSpec parses openapi.yaml from the package directory.
func loadSpec(t *testing.T) map[string]any {
	t.Helper()
	raw, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatalf("read spec: %v", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("parse spec: %v", err)
	}
	return doc
}

// newSpecEngine builds the real routes with no servers behind them: New
// only stores Stock, Orders and Limiter, and the requests below are turned
// away (auth or bad id) before any handler reaches them.
func newSpecEngine(t *testing.T) *gin.Engine {
	t.Helper()
	h, err := handler.New(handler.Deps{AdminToken: specAdmin, JWTSecret: specSecret, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatalf("new handler: %v", err)
	}
	return h.Routes()
}

// TestOpenAPIValidates: the spec is a valid OpenAPI 3.1 document, its
// examples included; every check of an answer against it depends on that.
func TestOpenAPIValidates(t *testing.T) {
	raw, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatalf("read spec: %v", err)
	}
	if _, err := contract.New(raw); err != nil {
		t.Error(err)
	}
}

// lookup follows keys through nested maps; nil when any is missing.
func lookup(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// specOperations returns the spec's operations keyed "METHOD /path".
func specOperations(t *testing.T, doc map[string]any) map[string]map[string]any {
	t.Helper()
	paths, ok := doc["paths"].(map[string]any)
	if !ok {
		t.Fatalf("spec paths: got %T, want a map", doc["paths"])
	}
	ops := map[string]map[string]any{}
	for path, item := range paths {
		for _, m := range httpMethods {
			if op, ok := lookup(item, m).(map[string]any); ok {
				ops[strings.ToUpper(m)+" "+path] = op
			}
		}
	}
	return ops
}

var ginParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

func TestOpenAPIRoutesMatchSpec(t *testing.T) {
	doc := loadSpec(t)
	if v := doc["openapi"]; v != "3.1.0" {
		t.Errorf("openapi version: got %v, want 3.1.0", v)
	}
	inSpec := map[string]bool{}
	for k := range specOperations(t, doc) {
		inSpec[k] = true
	}
	routes := map[string]bool{}
	for _, r := range newSpecEngine(t).Routes() {
		routes[r.Method+" "+ginParam.ReplaceAllString(r.Path, "{$1}")] = true
	}
	if len(routes) == 0 {
		t.Fatal("routes: got none, want the API's routes")
	}
	for _, k := range specUndocumented {
		if !routes[k] {
			t.Errorf("exclusion %q: got no such route, want an existing one", k)
		}
		delete(routes, k)
	}
	for k := range routes {
		if !inSpec[k] {
			t.Errorf("route %s: got missing from openapi.yaml, want documented", k)
		}
	}
	for k := range inSpec {
		if !routes[k] {
			t.Errorf("spec operation %s: got no such route, want one in routes.go", k)
		}
	}
}

// codeConsts parses problem.go and returns the values of its Code* string
// constants, so the test follows the source rather than a copied list.
func codeConsts(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "problem.go", nil, 0)
	if err != nil {
		t.Fatalf("parse problem.go: %v", err)
	}
	codes := map[string]string{}
	for _, decl := range f.Decls {
		g, ok := decl.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Code") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Errorf("%s: got a non-literal value, want a string literal", name.Name)
					continue
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatalf("%s: unquote %s: %v", name.Name, lit.Value, err)
				}
				codes[name.Name] = v
			}
		}
	}
	return codes
}

func TestOpenAPIProblemCodes(t *testing.T) {
	codes := codeConsts(t)
	// Spot-check the parser against the exported constants.
	for name, want := range map[string]string{"CodeSoldOut": handler.CodeSoldOut, "CodeInternal": handler.CodeInternal} {
		if got := codes[name]; got != want {
			t.Errorf("parsed %s: got %q, want %q", name, got, want)
		}
	}
	raw, ok := lookup(loadSpec(t), "components", "schemas", "Problem", "properties", "code", "enum").([]any)
	if !ok {
		t.Fatal("Problem.code enum: got none, want a list")
	}
	enum := map[string]bool{}
	for _, v := range raw {
		s, ok := v.(string)
		if !ok {
			t.Errorf("enum value %v: got %T, want string", v, v)
		}
		enum[s] = true
	}
	for name, v := range codes {
		if !enum[v] {
			t.Errorf("%s = %q: got missing from the Problem.code enum, want listed", name, v)
		}
	}
	values := map[string]bool{}
	for _, v := range codes {
		values[v] = true
	}
	for v := range enum {
		if !values[v] {
			t.Errorf("enum value %q: got no Code* constant in problem.go, want one", v)
		}
	}
	if len(enum) != len(raw) {
		t.Errorf("enum: got %d entries for %d distinct codes, want no duplicates", len(raw), len(enum))
	}
}

// TestOpenAPIAuth asks the real routes who may call them and checks the
// spec says the same: a route that refuses a request without a token must
// name a security scheme and document 401; one that refuses a user JWT is
// admin only.
func TestOpenAPIAuth(t *testing.T) {
	engine := newSpecEngine(t)
	checked := contract.Handler(t, engine)
	userJWT, err := handler.SignUserToken([]byte(specSecret), 7, time.Minute)
	if err != nil {
		t.Fatalf("sign user token: %v", err)
	}
	ops := specOperations(t, loadSpec(t))
	status := func(method, path, bearer string) int {
		// A non-numeric id is refused before any store is used, and so is
		// a bad page size by the lists (other routes read no query).
		req := httptest.NewRequest(method, ginParam.ReplaceAllString(path, "x")+"?limit=x", nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		rec := httptest.NewRecorder()
		checked.ServeHTTP(rec, req)
		return rec.Code
	}
	for _, r := range engine.Routes() {
		key := r.Method + " " + ginParam.ReplaceAllString(r.Path, "{$1}")
		op, ok := ops[key]
		if !ok {
			continue // reported by TestOpenAPIRoutesMatchSpec
		}
		var want []string
		switch {
		case status(r.Method, r.Path, "") != http.StatusUnauthorized:
			want = nil
		case status(r.Method, r.Path, userJWT) != http.StatusUnauthorized:
			want = []string{"bearerAuth"}
		case status(r.Method, r.Path, specAdmin) != http.StatusUnauthorized:
			want = []string{"adminAuth"}
		default:
			t.Errorf("%s: got 401 with every token, want one accepted", key)
			continue
		}
		var got []string
		sec, _ := op["security"].([]any)
		for _, req := range sec {
			m, _ := req.(map[string]any)
			for name := range m {
				got = append(got, name)
			}
		}
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s security: got %v, want %v", key, got, want)
		}
		if want != nil && lookup(op, "responses", "401") == nil {
			t.Errorf("%s: got no 401 response, want one", key)
		}
		if strings.Contains(r.Path, ":") && lookup(op, "responses", "400") == nil {
			t.Errorf("%s: got no 400 response for a bad id, want one", key)
		}
	}
	if top, ok := loadSpec(t)["security"].([]any); !ok || len(top) != 0 {
		t.Errorf("top-level security: got %v, want [] (public unless an operation says otherwise)", top)
	}
}

// TestOpenAPIRefs checks every $ref points at something in the document.
func TestOpenAPIRefs(t *testing.T) {
	doc := loadSpec(t)
	n := 0
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				n++
				keys, found := strings.CutPrefix(ref, "#/")
				if !found || lookup(doc, strings.Split(keys, "/")...) == nil {
					t.Errorf("$ref %q: got unresolved, want a local target", ref)
				}
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(doc)
	if n == 0 {
		t.Error("refs: got 0, want the shared components referenced")
	}
}

func TestOpenAPIServed(t *testing.T) {
	want, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatalf("read spec: %v", err)
	}
	rec := httptest.NewRecorder()
	contract.Handler(t, newSpecEngine(t)).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.yaml", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("status: got %d, want 200", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/yaml") {
		t.Errorf("content type: got %q, want application/yaml", ct)
	}
	if rec.Body.String() != string(want) {
		t.Errorf("body: got %d bytes, want the %d bytes of openapi.yaml", rec.Body.Len(), len(want))
	}
}
