package handler

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"seckill/order/lifecycle"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"gopkg.in/yaml.v3"

	"seckill/order"
	"seckill/order/sale"
	"seckill/stock"
)

// do sends one request through the fixture's checked engine.
func (f *fixture) do(method, target, bearer, body string, hdr http.Header) *httptest.ResponseRecorder {
	var req *http.Request
	if body == "" {
		req = httptest.NewRequest(method, target, nil)
	} else {
		req = httptest.NewRequest(method, target, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	w := httptest.NewRecorder()
	f.serve.ServeHTTP(w, req)
	return w
}

// problemOf decodes a problem answer.
func problemOf(t *testing.T, w *httptest.ResponseRecorder) Problem {
	t.Helper()
	var p Problem
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatalf("problem body %q: %v", w.Body, err)
	}
	return p
}

// TestContractRoutes sends one request of each kind the API answers
// through the engine checked against openapi.yaml: the check fails the test
// on any answer the spec does not describe.
func TestContractRoutes(t *testing.T) {
	f := newFixture(t, 3, 2)
	user, _ := SignUserToken([]byte(benchSecret), 7, time.Hour)
	item := fmt.Sprintf("/api/v1/items/%d", f.item.ID)
	tests := []struct {
		name, method, target, bearer, body string
		status                             int
	}{
		{"item", "GET", item, "", "", 200},
		{"item, trailing slash", "GET", item + "/", "", "", 404},
		{"create, trailing slash", "POST", "/api/v1/admin/items/", benchAdmin, `{"name":"x","price_minor":1000,"currency":"EUR","stock":1}`, 404},
		{"item, doubled slash", "GET", "/api/v1//items/1", "", "", 404},
		{"item, bad id", "GET", "/api/v1/items/abc", "", "", 400},
		{"item, unknown", "GET", "/api/v1/items/987654321", "", "", 404},
		{"token", "POST", item + "/tokens", user, "", 201},
		{"token, no bearer", "POST", item + "/tokens", "", "", 401},
		{"token, bad bearer", "POST", item + "/tokens", "x.y.z", "", 401},
		{"purchase, no key", "POST", item + "/purchase", user, "", 403},
		{"order, unknown", "GET", "/api/v1/orders/123", user, "", 404},
		{"pay, unknown", "POST", "/api/v1/orders/123/pay", user, "", 404},
		{"cancel, unknown", "POST", "/api/v1/orders/123/cancel", user, "", 404},
		{"cancel, no bearer", "POST", "/api/v1/orders/123/cancel", "", "", 401},
		{"cancel, bad id", "POST", "/api/v1/orders/0x1/cancel", user, "", 400},
		{"callback, unsigned", "POST", "/api/v1/payments/callback", "", `{}`, 401},
		{"callback, not JSON", "POST", "/api/v1/payments/callback", "", "", 415},
		{"create", "POST", "/api/v1/admin/items", benchAdmin, `{"name":"phone","price_minor":1000,"currency":"EUR","stock":5,"shards":2,"starts_at":"2030-01-01T10:00:00+02:00","ends_at":"2030-01-01T11:00:00Z"}`, 201},
		{"create, user token", "POST", "/api/v1/admin/items", user, `{"name":"x","price_minor":1000,"currency":"EUR","stock":1}`, 401},
		{"stats", "GET", fmt.Sprintf("/api/v1/admin/items/%d/stats", f.item.ID), benchAdmin, "", 200},
		{"rebuild, no reconciler", "POST", fmt.Sprintf("/api/v1/admin/items/%d/rebuild", f.item.ID), benchAdmin, "", 503},
		// The operator's controls and the order lists.
		{"list items", "GET", "/api/v1/admin/items?limit=5", benchAdmin, "", 200},
		{"list items, bad limit", "GET", "/api/v1/admin/items?limit=0", benchAdmin, "", 400},
		{"list items, user token", "GET", "/api/v1/admin/items", user, "", 401},
		{"pause", "POST", fmt.Sprintf("/api/v1/admin/items/%d/pause", f.item.ID), benchAdmin, "", 200},
		{"token, paused", "POST", item + "/tokens", user, "", 409},
		{"resume", "POST", fmt.Sprintf("/api/v1/admin/items/%d/resume", f.item.ID), benchAdmin, "", 200},
		{"pause, unknown item", "POST", "/api/v1/admin/items/987654321/pause", benchAdmin, "", 404},
		{"edit, started", "PATCH", fmt.Sprintf("/api/v1/admin/items/%d", f.item.ID), benchAdmin, `{"per_user_limit":2}`, 409},
		{"edit, unknown field", "PATCH", fmt.Sprintf("/api/v1/admin/items/%d", f.item.ID), benchAdmin, `{"stock":2}`, 400},
		{"add stock, no key", "POST", fmt.Sprintf("/api/v1/admin/items/%d/stock", f.item.ID), benchAdmin, `{"units":2}`, 400},
		{"user orders", "GET", "/api/v1/admin/users/7/orders?limit=2", benchAdmin, "", 200},
		{"own orders", "GET", "/api/v1/orders?item=1", user, "", 200},
		{"own orders, no bearer", "GET", "/api/v1/orders", "", "", 401},
		{"own orders, unknown parameter", "GET", "/api/v1/orders?user=8", user, "", 400},
		{"end", "POST", fmt.Sprintf("/api/v1/admin/items/%d/end", f.item.ID), benchAdmin, "", 200},
		{"token, ended", "POST", item + "/tokens", user, "", 410},
		{"known path, other method", "DELETE", "/api/v1/admin/items", benchAdmin, "", 404},
		{"unknown path", "GET", "/nope", "", "", 404},
		{"healthz", "GET", "/healthz", "", "", 200},
		{"readyz", "GET", "/readyz", "", "", 200},
		{"metrics", "GET", "/metrics", "", "", 200},
		{"spec", "GET", "/openapi.yaml", "", "", 200},
	}
	for _, tt := range tests {
		if w := f.do(tt.method, tt.target, tt.bearer, tt.body, nil); w.Code != tt.status {
			t.Errorf("%s: %s %s: got %d %s, want %d", tt.name, tt.method, tt.target, w.Code, w.Body, tt.status)
		}
	}
}

// TestCreatedItemLocation: a 201 names where the new item is read, and
// that address answers with the same item.
func TestCreatedItemLocation(t *testing.T) {
	f := newFixture(t, 1, 1)
	w := f.do("POST", "/api/v1/admin/items", benchAdmin, `{"name":"located","price_minor":1000,"currency":"EUR","stock":4}`, nil)
	if w.Code != http.StatusCreated {
		t.Fatalf("create: got %d %s, want 201", w.Code, w.Body)
	}
	var created itemView
	if err := json.Unmarshal(w.Body.Bytes(), &created); err != nil {
		t.Fatal(err)
	}
	loc := w.Header().Get("Location")
	if want := fmt.Sprintf("/api/v1/items/%d", created.ID); loc != want {
		t.Fatalf("Location: got %q, want %q", loc, want)
	}
	if r := f.do("GET", loc, "", "", nil); r.Code != http.StatusOK || !strings.Contains(r.Body.String(), `"name":"located"`) {
		t.Errorf("GET Location: got %d %s, want 200 with the item", r.Code, r.Body)
	}
}

// TestItemFieldsMatchSpec: the JSON fields an item answer can carry are
// exactly the ItemView properties, and the required ones are always sent.
func TestItemFieldsMatchSpec(t *testing.T) {
	props, required := itemViewSchema(t)
	end := time.Now()
	full := fieldsOf(t, itemView{Item: order.Item{ID: 1, Name: "x", Stock: 1, Shards: 1, PerUserLimit: 1, Sold: 1, EndsAt: &end}})
	if !slices.Equal(full, props) {
		t.Errorf("fields of a full item: got %v, want the spec's %v", full, props)
	}
	least := fieldsOf(t, itemView{})
	for _, name := range required {
		if !slices.Contains(least, name) {
			t.Errorf("required %q: got absent from %v, want always sent", name, least)
		}
	}
}

// itemViewSchema merges the allOf parts of ItemView: its properties and
// required names, sorted.
func itemViewSchema(t *testing.T) (props, required []string) {
	t.Helper()
	raw, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type schema struct {
		Ref        string         `yaml:"$ref"`
		Required   []string       `yaml:"required"`
		Properties map[string]any `yaml:"properties"`
		AllOf      []schema       `yaml:"allOf"`
	}
	var doc struct {
		Components struct {
			Schemas map[string]schema `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for _, part := range doc.Components.Schemas["ItemView"].AllOf {
		if name, ok := strings.CutPrefix(part.Ref, "#/components/schemas/"); ok {
			part = doc.Components.Schemas[name]
		}
		for p := range part.Properties {
			set[p] = true
		}
		required = append(required, part.Required...)
	}
	slices.Sort(required)
	return slices.Sorted(maps.Keys(set)), required
}

func fieldsOf(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return slices.Sorted(maps.Keys(m))
}

// TestDecodeDetails: a refused body is explained in the API's words, never
// in a decoder's (Go types, struct names).
func TestDecodeDetails(t *testing.T) {
	f := newFixture(t, 1, 1)
	tests := []struct{ body, detail string }{
		{`{"name":"x","price_minor":1000,"currency":"EUR","stock":"5"}`, "stock must be an integer"},
		{`{"name":"x","price_minor":1000,"currency":"EUR","stock":1.5}`, "stock must be an integer"},
		{`{"name":"x","price_minor":1000,"currency":"EUR","stock":1e30}`, "stock must be an integer"},
		{`{"name":"x","price_minor":1000,"currency":"EUR","stock":1,"shards":true}`, "shards must be an integer"},
		{`{"name":5,"stock":1}`, "name must be a string"},
		{`{"name":"x","price_minor":1000,"currency":"EUR","stock":1,"starts_at":"tomorrow"}`, "starts_at must be an RFC 3339 date-time"},
		{`{"name":"x","price_minor":1000,"currency":"EUR","stock":1,"ends_at":17}`, "ends_at must be an RFC 3339 date-time"},
		{`{"name":"x","price_minor":1000,"currency":"EUR","stock":1,"starts_at":"10000-01-01T00:00:00Z"}`, "starts_at must be an RFC 3339 date-time"},
		{`{"name":"x","price_minor":1000,"currency":"EUR","stock":1,"colour":"red"}`, `unknown field "colour"`},
		{`{"name":"x","Stock":1}`, `unknown field "Stock"`},
		{`{"name":"x","price_minor":1000,"currency":"EUR","stock":1,"` + strings.Repeat("k", 100) + `":1}`, `unknown field "` + strings.Repeat("k", 64) + `…"`},
		{`{"name":`, "body is not valid JSON"},
		{`{"name":"x","price_minor":1000,"currency":"EUR","stock":1}}`, "body is not valid JSON"},
		{`{"name":"x","price_minor":1000,"currency":"EUR","stock":1} {"name":"y"}`, "body is not valid JSON"},
		{`[{"name":"x","price_minor":1000,"currency":"EUR","stock":1}]`, "body must be a JSON object"},
		{`"x"`, "body must be a JSON object"},
		{`null`, "body must be a JSON object"},
		{" \n", "body is required"},
	}
	for _, tt := range tests {
		w := f.do("POST", "/api/v1/admin/items", benchAdmin, tt.body, nil)
		if w.Code != http.StatusBadRequest {
			t.Errorf("%s: got %d %s, want 400", tt.body, w.Code, w.Body)
			continue
		}
		if p := problemOf(t, w); p.Detail != tt.detail || p.Code != CodeInvalidRequest {
			t.Errorf("%s: got %s %q, want invalid_request %q", tt.body, p.Code, p.Detail, tt.detail)
		}
	}
}

// TestCreateItemContentType: a body is JSON only when labelled so; a form
// or plain text is not read as JSON by guesswork.
func TestCreateItemContentType(t *testing.T) {
	f := newFixture(t, 1, 1)
	tests := []struct {
		contentType []string
		status      int
	}{
		{nil, http.StatusUnsupportedMediaType},
		{[]string{"text/plain"}, http.StatusUnsupportedMediaType},
		{[]string{"application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
		{[]string{"application/json;;"}, http.StatusUnsupportedMediaType},
		{[]string{"application/json"}, http.StatusCreated},
		{[]string{"Application/JSON; charset=utf-8"}, http.StatusCreated},
	}
	for _, tt := range tests {
		req := httptest.NewRequest("POST", "/api/v1/admin/items", strings.NewReader(`{"name":"typed","price_minor":1000,"currency":"EUR","stock":1}`))
		req.Header.Set("Authorization", "Bearer "+benchAdmin)
		if tt.contentType != nil {
			req.Header["Content-Type"] = tt.contentType
		}
		w := httptest.NewRecorder()
		f.serve.ServeHTTP(w, req)
		if w.Code != tt.status {
			t.Errorf("Content-Type %q: got %d %s, want %d", tt.contentType, w.Code, w.Body, tt.status)
		}
	}
}

// TestSaleTimeBounds: the window's bounds hold in UTC, whatever the offset
// a time is written with; past them is the client's mistake (400), never a
// failing dependency (503) that a retry would not cure.
func TestSaleTimeBounds(t *testing.T) {
	f := newFixture(t, 1, 1)
	create := func(times string) *httptest.ResponseRecorder {
		return f.do("POST", "/api/v1/admin/items", benchAdmin, `{"name":"window","price_minor":1000,"currency":"EUR","stock":1`+times+`}`, nil)
	}
	tests := []struct {
		name, times string
		status      int
	}{
		{"start in year 10000 in UTC", `,"starts_at":"9999-12-31T23:59:59-01:00"`, 400},
		{"end in year 10000 in UTC", `,"ends_at":"9999-12-31T23:30:00-01:00"`, 400},
		{"start in 1999 in UTC", `,"starts_at":"2000-01-01T05:00:00+14:00"`, 400},
		{"start in 1999", `,"starts_at":"1999-12-31T23:59:59.999Z"`, 400},
		{"end within the same millisecond", `,"starts_at":"2030-01-01T00:00:00.0001Z","ends_at":"2030-01-01T00:00:00.0009Z"`, 400},
		{"first instant", `,"starts_at":"2000-01-01T00:00:00Z"`, 201},
		{"first instant, written in 1999", `,"starts_at":"1999-12-31T23:00:00-01:00"`, 201},
		{"last millisecond", `,"ends_at":"9999-12-31T23:59:59.999999Z"`, 201},
	}
	for _, tt := range tests {
		w := create(tt.times)
		if w.Code != tt.status {
			t.Errorf("%s: got %d %s, want %d", tt.name, w.Code, w.Body, tt.status)
		}
	}
	// What is stored is UTC: the offset is gone, the instant kept.
	w := create(`,"starts_at":"2030-01-01T10:00:00+02:00","ends_at":"2030-01-01T23:30:00-01:00"`)
	for _, want := range []string{`"starts_at":"2030-01-01T08:00:00Z"`, `"ends_at":"2030-01-02T00:30:00Z"`} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("created: got %s, want %s", w.Body, want)
		}
	}
}

// TestUserSubjectIsCanonical: one user has one subject; every other
// spelling of the number is not a user id.
func TestUserSubjectIsCanonical(t *testing.T) {
	f := newFixture(t, 1, 1)
	item := fmt.Sprintf("/api/v1/items/%d/tokens", f.item.ID)
	sign := func(sub string) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
			Subject: sub, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
		}).SignedString([]byte(benchSecret))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, sub := range []string{"7", "9223372036854775807"} {
		if w := f.do("POST", item, sign(sub), "", nil); w.Code != http.StatusCreated {
			t.Errorf("sub %q: got %d %s, want 201", sub, w.Code, w.Body)
		}
	}
	for _, sub := range []string{"007", "+7", "-7", "0", " 7", "7 ", "", "7.0", "0x7", "9223372036854775808"} {
		w := f.do("POST", item, sign(sub), "", nil)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("sub %q: got %d %s, want 401", sub, w.Code, w.Body)
		}
	}
}

// TestUnauthorizedChallenge: every 401 tells the client the scheme it
// wants (RFC 6750), with error="invalid_token" only when a token was sent.
func TestUnauthorizedChallenge(t *testing.T) {
	f := newFixture(t, 1, 1)
	user, _ := SignUserToken([]byte(benchSecret), 7, time.Hour)
	expired, _ := SignUserToken([]byte(benchSecret), 7, -time.Minute)
	tokens := fmt.Sprintf("/api/v1/items/%d/tokens", f.item.ID)
	const missing, invalid = `Bearer realm="seckill"`, `Bearer realm="seckill", error="invalid_token", error_description="the token is invalid or expired"`
	tests := []struct {
		name, method, target string
		hdr                  http.Header
		want                 string
	}{
		{"user route, no token", "POST", tokens, nil, missing},
		{"user route, another scheme", "POST", tokens, http.Header{"Authorization": {"Basic dTpw"}}, missing},
		{"user route, expired", "POST", tokens, http.Header{"Authorization": {"Bearer " + expired}}, invalid},
		{"user route, twice", "POST", tokens, http.Header{"Authorization": {"Bearer " + user, "Bearer " + user}}, missing},
		{"admin route, no token", "POST", "/api/v1/admin/items", nil, missing},
		{"admin route, user token", "GET", "/api/v1/admin/items/1/stats", http.Header{"Authorization": {"Bearer " + user}}, invalid},
	}
	for _, tt := range tests {
		w := f.do(tt.method, tt.target, "", "", tt.hdr)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("%s: got %d %s, want 401", tt.name, w.Code, w.Body)
			continue
		}
		if got := w.Header().Values("WWW-Authenticate"); !slices.Equal(got, []string{tt.want}) {
			t.Errorf("%s: WWW-Authenticate got %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestIdempotencyKeyHeader: the header's name matches in any case, its
// value only exactly, and a request carrying two keys is refused whole
// rather than decided by one of them.
func TestIdempotencyKeyHeader(t *testing.T) {
	f := newFixture(t, 1, 1)
	bs := f.buyers(t, 2, 1)
	path := fmt.Sprintf("/api/v1/items/%d/purchase", f.item.ID)
	keys := func(vs ...string) http.Header { return http.Header{"Idempotency-Key": vs} }

	w := f.do("POST", path, bs[0].jwt, "", keys(bs[0].key, "other"))
	if p := problemOf(t, w); w.Code != http.StatusBadRequest || p.Code != CodeInvalidRequest {
		t.Fatalf("two keys: got %d %s, want 400 invalid_request", w.Code, w.Body)
	}
	if w := f.do("POST", path, bs[0].jwt, "", keys(bs[0].key, bs[0].key)); w.Code != http.StatusBadRequest {
		t.Fatalf("the same key twice: got %d %s, want 400", w.Code, w.Body)
	}
	if w := f.do("POST", path, bs[0].jwt, "", keys(strings.ToUpper(bs[0].key))); w.Code != http.StatusForbidden {
		t.Fatalf("key in upper case: got %d %s, want 403 token_invalid", w.Code, w.Body)
	}
	// On the wire, names in any case are one header: lower case is the
	// key, and two spellings are two keys.
	srv := httptest.NewServer(f.serve)
	defer srv.Close()
	raw := func(headers string) int {
		t.Helper()
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 0\r\nConnection: close\r\n%s\r\n", path, bs[0].jwt, headers)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := raw("idempotency-key: " + bs[0].key + "\r\nIDEMPOTENCY-KEY: " + bs[0].key + "\r\n"); code != http.StatusBadRequest {
		t.Errorf("two spellings of the name: got %d, want 400", code)
	}
	if code := raw("idempotency-key: " + bs[0].key + "\r\n"); code != http.StatusAccepted {
		t.Fatalf("lower-case name: got %d, want 202", code)
	}
	// Sold out now: answers remembered in memory, too, are the exact
	// key's alone.
	if w := f.do("POST", path, bs[1].jwt, "", keys(bs[1].key)); w.Code != http.StatusConflict {
		t.Fatalf("second buyer: got %d %s, want 409 sold_out", w.Code, w.Body)
	}
	if w := f.do("POST", path, bs[0].jwt, "", keys(bs[0].key)); w.Code != http.StatusAccepted {
		t.Errorf("replay: got %d %s, want 202", w.Code, w.Body)
	}
	if w := f.do("POST", path, bs[0].jwt, "", keys(strings.ToUpper(bs[0].key))); w.Code == http.StatusAccepted {
		t.Errorf("replay in upper case: got %d %s, want a refusal", w.Code, w.Body)
	}
}

// TestPassingDependencyStates: states of the dependencies that pass are
// 503 with Retry-After from the status table, not internal failures.
func TestPassingDependencyStates(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("rebuild item 1: %w", lifecycle.ErrNotSettled),
		fmt.Errorf("rebuild item 1: lease sweeper: %w", stock.ErrLeaseHeld),
		fmt.Errorf("node id lease not confirmed: %w", sale.ErrNoOrderID),
	} {
		p, internal := toProblem(err)
		if p.Status != http.StatusServiceUnavailable || p.Code != CodeUnavailable || internal || p.retryAfter < time.Second {
			t.Errorf("%v: got %d %s internal=%v Retry-After %v, want 503 unavailable, not internal, with Retry-After",
				err, p.Status, p.Code, internal, p.retryAfter)
		}
		if p == errInternal {
			t.Errorf("%v: got the catch-all problem, want a row of its own", err)
		}
	}
}
