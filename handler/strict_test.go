package handler

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestPathIDsCanonical: an id in a path is the canonical decimal of a
// positive int64, as the API writes ids; every other spelling of a number
// (leading zero, sign, escape, blank, exponent, overflow) is 400
// invalid_request on every route that takes one, never the id it resembles.
func TestPathIDsCanonical(t *testing.T) {
	f := newFixture(t, 3, 2)
	user, _ := SignUserToken([]byte(benchSecret), 7, time.Hour)
	routes := []struct{ method, path, bearer string }{
		{"GET", "/api/v1/items/%s", ""},
		{"POST", "/api/v1/items/%s/tokens", user},
		{"POST", "/api/v1/items/%s/purchase", user},
		{"GET", "/api/v1/orders/%s", user},
		{"POST", "/api/v1/orders/%s/pay", user},
		{"GET", "/api/v1/admin/items/%s/stats", benchAdmin},
		{"POST", "/api/v1/admin/items/%s/rebuild", benchAdmin},
	}
	id := fmt.Sprint(f.item.ID)
	bad := []string{
		"0" + id, "+" + id, "-" + id, "%" + fmt.Sprintf("%X", id[0]) + id[1:], "%20" + id, id + "%20",
		"02129756806884158208", "1e3", "0", "00", "-0", "9223372036854775808", "99999999999999999999",
		"0x1F", "1.0", "%31",
	}
	for _, r := range routes {
		for _, b := range bad {
			target := fmt.Sprintf(r.path, b)
			hdr := http.Header{"Idempotency-Key": {"k"}}
			w := f.do(r.method, target, r.bearer, "", hdr)
			if w.Code != http.StatusBadRequest {
				t.Errorf("%s %s: got %d %s, want 400", r.method, target, w.Code, w.Body)
				continue
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("%s %s: Content-Type %q, want application/problem+json", r.method, target, ct)
			}
			if p := problemOf(t, w); p.Code != CodeInvalidRequest {
				t.Errorf("%s %s: code %q, want %s", r.method, target, p.Code, CodeInvalidRequest)
			}
		}
	}
	// The canonical spelling still names the item.
	if w := f.do("GET", "/api/v1/items/"+id, "", "", nil); w.Code != http.StatusOK {
		t.Errorf("GET canonical id: got %d %s, want 200", w.Code, w.Body)
	}
}

// TestPositiveID is the rule on its own, with the largest id.
func TestPositiveID(t *testing.T) {
	for s, want := range map[string]int64{"1": 1, "10": 10, "9223372036854775807": 1<<63 - 1} {
		if got, ok := positiveID(s); !ok || got != want {
			t.Errorf("%q: got %d, %v; want %d", s, got, ok, want)
		}
	}
	for _, s := range []string{"", "0", "01", "+1", "-1", " 1", "1 ", "1e3", "9223372036854775808", "١"} {
		if got, ok := positiveID(s); ok {
			t.Errorf("%q: got %d, want refused", s, got)
		}
	}
}

// TestDuplicateJSONKeys: a body naming a field twice is refused in the
// API's words, whichever spelling (escaped or not) the second one uses,
// and nothing is created.
func TestDuplicateJSONKeys(t *testing.T) {
	f := newFixture(t, 1, 1)
	tests := []struct{ body, detail string }{
		{`{"name":"x","price_minor":1000,"currency":"EUR","stock":1,"stock":2}`, `duplicate field "stock"`},
		{`{"name":"x","name":"y","stock":1}`, `duplicate field "name"`},
		{`{"name":"x","price_minor":1000,"currency":"EUR","stock":1,"st\u006fck":2}`, `duplicate field "stock"`},
		{`{"name":"x","price_minor":1000,"currency":"EUR","stock":1,"colour":1,"colour":2}`, `duplicate field "colour"`},
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
	// Nothing was created: the next item is the fixture's successor.
	w := f.do("POST", "/api/v1/admin/items", benchAdmin, `{"name":"after","price_minor":1000,"currency":"EUR","stock":1}`, nil)
	if w.Code != http.StatusCreated || !strings.Contains(w.Body.String(), fmt.Sprintf(`"id":%d,`, f.item.ID+1)) {
		t.Errorf("create after refusals: got %d %s, want 201 with id %d", w.Code, w.Body, f.item.ID+1)
	}
}

// TestDuplicateName is the scan on its own: any depth, escapes resolved,
// the same name in sibling objects allowed.
func TestDuplicateName(t *testing.T) {
	tests := []struct {
		json, dup string
	}{
		{`{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}]}`, ""},
		{`{"a":1,"a":2}`, "a"},
		{`{"a":{"b":1,"b":2}}`, "b"},
		{`[{"a":1},{"b":[1,{"c":1,"c":2}]}]`, "c"},
		{`{"\u0061":1,"a":2}`, "a"},
		{`{"a":1,"a"`, "a"},
		{`{"a":`, ""},
		{`nonsense`, ""},
		{`[}`, ""},
		{`{,}`, ""},
		{`{"a":}`, ""},
		{`"\`, ""},
		{`{"a":1 "a":2}`, "a"},
		{`{"a\"b":1,"a\"b":2}`, `a"b`},
		{`{"x":"}","x":1}`, "x"},
		{"{\"\xff\":1,\"\\ufffd\":2}", "\ufffd"},
	}
	for _, tt := range tests {
		name, ok := duplicateName([]byte(tt.json))
		if ok != (tt.dup != "") || name != tt.dup {
			t.Errorf("%s: got %q, %v; want %q", tt.json, name, ok, tt.dup)
		}
	}
}

// signRaw signs a token from its header and claims as written, with the
// fixture's secret: what a holder of the key could send.
func signRaw(header, claims string) string {
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
	m := hmac.New(sha256.New, []byte(benchSecret))
	m.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(m.Sum(nil))
}

// nonCanonical respells the last base64url character of a segment with a
// padding bit set: the same bytes to a lenient decoder.
func nonCanonical(seg string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, seg[len(seg)-1])
	return seg[:len(seg)-1] + string(alphabet[i^1])
}

// TestUserTokenParsedStrictly: a token is read as exactly as it is
// written. A claim of the wrong JSON type, a registered claim name in
// another case, a name given twice (in the claims or the header), a
// non-canonical base64 segment or another algorithm is 401 problem+json,
// even signed with the right key; a well-formed token still passes, and
// an unknown private claim is ignored as RFC 7519 says.
func TestUserTokenParsedStrictly(t *testing.T) {
	f := newFixture(t, 1, 1)
	tokens := fmt.Sprintf("/api/v1/items/%d/tokens", f.item.ID)
	exp := time.Now().Add(time.Hour).Unix()
	const hs256 = `{"alg":"HS256","typ":"JWT"}`
	good := signRaw(hs256, fmt.Sprintf(`{"sub":"7","exp":%d}`, exp))
	parts := strings.Split(good, ".")
	// The claims segment re-signed with a padding bit set (its length
	// leaves padding bits: checked below).
	oddClaims := parts[0] + "." + nonCanonical(parts[1])
	m := hmac.New(sha256.New, []byte(benchSecret))
	m.Write([]byte(oddClaims))
	oddClaims += "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	if len(parts[1])%4 == 0 {
		t.Fatal("claims segment has no padding bits; change the claims")
	}
	forged := map[string]string{
		"exp as a string":           signRaw(hs256, fmt.Sprintf(`{"sub":"7","exp":"%d"}`, exp)),
		"exp null":                  signRaw(hs256, `{"sub":"7","exp":null}`),
		"exp as a bool":             signRaw(hs256, `{"sub":"7","exp":true}`),
		"nbf as a string":           signRaw(hs256, fmt.Sprintf(`{"sub":"7","exp":%d,"nbf":"0"}`, exp)),
		"iat as a string":           signRaw(hs256, fmt.Sprintf(`{"sub":"7","exp":%d,"iat":"0"}`, exp)),
		"sub as a number":           signRaw(hs256, fmt.Sprintf(`{"sub":7,"exp":%d}`, exp)),
		"aud as a number":           signRaw(hs256, fmt.Sprintf(`{"sub":"7","exp":%d,"aud":1}`, exp)),
		"EXP in capitals":           signRaw(hs256, fmt.Sprintf(`{"sub":"7","EXP":%d}`, exp)),
		"Exp besides exp":           signRaw(hs256, fmt.Sprintf(`{"sub":"7","exp":%d,"Exp":1}`, exp)),
		"SUB in capitals":           signRaw(hs256, fmt.Sprintf(`{"SUB":"7","exp":%d}`, exp)),
		"sub with a long s":         signRaw(hs256, fmt.Sprintf(`{"sub":"8","exp":%d,"ſub":"7"}`, exp)),
		"sub twice":                 signRaw(hs256, fmt.Sprintf(`{"sub":"8","exp":%d,"sub":"7"}`, exp)),
		"exp twice":                 signRaw(hs256, fmt.Sprintf(`{"sub":"7","exp":1,"exp":%d}`, exp)),
		"sub twice, escaped":        signRaw(hs256, fmt.Sprintf(`{"sub":"8","exp":%d,"\u0073ub":"7"}`, exp)),
		"alg twice in the header":   signRaw(`{"alg":"none","alg":"HS256"}`, fmt.Sprintf(`{"sub":"7","exp":%d}`, exp)),
		"claims not an object":      signRaw(hs256, `["sub","7"]`),
		"no exp":                    signRaw(hs256, `{"sub":"7"}`),
		"alg none":                  base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".",
		"HS512 header":              signRaw(`{"alg":"HS512","typ":"JWT"}`, fmt.Sprintf(`{"sub":"7","exp":%d}`, exp)),
		"signature non-canonical":   parts[0] + "." + parts[1] + "." + nonCanonical(parts[2]),
		"claims non-canonical":      oddClaims,
		"signature padded":          good + "=",
		"four segments":             good + ".x",
		"expired":                   signRaw(hs256, `{"sub":"7","exp":1.5}`),
		"right claims, wrong order": parts[1] + "." + parts[0] + "." + parts[2],
	}
	bare, err := New(Deps{AdminToken: "a", JWTSecret: benchSecret, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range forged {
		w := f.do("POST", tokens, tok, "", nil)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("%s: got %d %s, want 401", name, w.Code, w.Body)
			continue
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: Content-Type %q, want application/problem+json", name, ct)
		}
		// Nor does the memory of verified tokens ever hold it.
		if id, err := bare.parseUser(tok); err == nil {
			t.Errorf("%s: parsed as user %d", name, id)
		}
		if _, ok := bare.users.Get(digestOf(tok)); ok {
			t.Errorf("%s: remembered as verified", name)
		}
	}
	wellFormed := map[string]string{
		"as written":             good,
		"SignUserToken":          must(SignUserToken([]byte(benchSecret), 7, time.Hour)),
		"with a private claim":   signRaw(hs256, fmt.Sprintf(`{"sub":"7","exp":%d,"role":"x"}`, exp)),
		"every registered claim": signRaw(hs256, fmt.Sprintf(`{"iss":"i","sub":"7","aud":["a"],"exp":%d.5,"nbf":0,"iat":1,"jti":"j"}`, exp)),
	}
	for name, tok := range wellFormed {
		// Twice: verified, then from the memory of verified tokens.
		for range 2 {
			if w := f.do("POST", tokens, tok, "", nil); w.Code != http.StatusCreated {
				t.Errorf("%s: got %d %s, want 201", name, w.Code, w.Body)
			}
		}
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

// FuzzDuplicateName: the scan ends on any input and never panics (its
// answers on valid JSON are TestDuplicateName's).
func FuzzDuplicateName(f *testing.F) {
	for _, s := range []string{`{"a":1,"a":2}`, `{"a":{"b":[1,{"c":2}]}}`, `[}`, `{"\u0061":1,"a":1}`, `"\`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		duplicateName(data)
	})
}
