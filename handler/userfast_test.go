package handler

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func fastFixture(t testing.TB, now time.Time) *Handler {
	t.Helper()
	h, err := New(Deps{AdminToken: "a", JWTSecret: benchSecret, Registry: prometheus.NewRegistry(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// agree checks that userFast, where it decides, gives the library's
// answer for tok at now, and reports whether it decided.
func agree(t *testing.T, h *Handler, tok string, now time.Time) (done bool) {
	t.Helper()
	id, exp, ok, done := h.userFast(tok, now.UnixNano())
	libID, libExp, err := h.userLibrary(tok)
	if !done {
		return false
	}
	switch {
	case ok && err != nil:
		t.Errorf("%q: fast path accepts user %d, the library refuses: %v", tok, id, err)
	case !ok && err == nil:
		t.Errorf("%q: fast path refuses as expired, the library accepts user %d", tok, libID)
	case ok && (id != libID || exp != libExp):
		t.Errorf("%q: fast path reads user %d exp %d, the library user %d exp %d", tok, id, exp, libID, libExp)
	}
	return true
}

// TestUserFastAgreesWithTheLibrary: the hand-written verification of the
// one shape SignUserToken writes gives the answer golang-jwt and the strict
// checks give, decides every token SignUserToken makes (so it is the path
// a buyer takes), and declines every other shape, wrong key or respelling.
func TestUserFastAgreesWithTheLibrary(t *testing.T) {
	now := time.Now()
	h := fastFixture(t, now)
	const hs256 = `{"alg":"HS256","typ":"JWT"}`
	if got := base64.RawURLEncoding.EncodeToString([]byte(hs256)); got != canonicalHeader {
		t.Fatalf("canonicalHeader is %q, the header as written encodes to %q", canonicalHeader, got)
	}
	decided := map[string]string{
		"valid":              must(SignUserTokenAt([]byte(benchSecret), 7, now, time.Hour)),
		"long id":            must(SignUserTokenAt([]byte(benchSecret), 123456789012345678, now, time.Hour)),
		"expired":            must(SignUserTokenAt([]byte(benchSecret), 7, now.Add(-2*time.Hour), time.Hour)),
		"expires now":        must(SignUserTokenAt([]byte(benchSecret), 7, now.Truncate(time.Second).Add(-time.Hour), time.Hour)),
		"issued in future":   must(SignUserTokenAt([]byte(benchSecret), 7, now.Add(time.Hour), time.Hour)),
		"iat 0, signed raw":  signRaw(hs256, fmt.Sprintf(`{"sub":"7","exp":%d,"iat":0}`, now.Add(time.Hour).Unix())),
		"exp 0, signed raw":  signRaw(hs256, `{"sub":"7","exp":0,"iat":0}`),
		"far exp":            signRaw(hs256, `{"sub":"7","exp":9000000000,"iat":0}`),
		"sub of 18 digits":   signRaw(hs256, fmt.Sprintf(`{"sub":"999999999999999999","exp":%d,"iat":1}`, now.Add(time.Hour).Unix())),
		"SignUserToken, now": must(SignUserToken([]byte(benchSecret), 42, time.Minute)),
	}
	for name, tok := range decided {
		if !agree(t, h, tok, now) {
			t.Errorf("%s: the fast path declined a token of the shape SignUserToken writes", name)
		}
	}
	exp := now.Add(time.Hour).Unix()
	good := decided["valid"]
	parts := strings.Split(good, ".")
	other, _ := SignUserTokenAt([]byte("another-secret"), 7, now, time.Hour)
	declined := map[string]string{
		"other key":               other,
		"signature respelt":       parts[0] + "." + parts[1] + "." + nonCanonical(parts[2]),
		"claims respelt":          parts[0] + "." + nonCanonical(parts[1]) + "." + parts[2],
		"signature cut":           good[:len(good)-1],
		"signature padded":        good + "=",
		"four segments":           good + ".x",
		"no iat":                  signRaw(hs256, fmt.Sprintf(`{"sub":"7","exp":%d}`, exp)),
		"sub 0":                   signRaw(hs256, fmt.Sprintf(`{"sub":"0","exp":%d,"iat":1}`, exp)),
		"sub with a leading zero": signRaw(hs256, fmt.Sprintf(`{"sub":"07","exp":%d,"iat":1}`, exp)),
		"sub of 19 digits":        signRaw(hs256, fmt.Sprintf(`{"sub":"1000000000000000000","exp":%d,"iat":1}`, exp)),
		"sub negative":            signRaw(hs256, fmt.Sprintf(`{"sub":"-7","exp":%d,"iat":1}`, exp)),
		"sub as a number":         signRaw(hs256, fmt.Sprintf(`{"sub":7,"exp":%d,"iat":1}`, exp)),
		"exp as a string":         signRaw(hs256, fmt.Sprintf(`{"sub":"7","exp":"%d","iat":1}`, exp)),
		"exp with a fraction":     signRaw(hs256, fmt.Sprintf(`{"sub":"7","exp":%d.5,"iat":1}`, exp)),
		"exp with an exponent":    signRaw(hs256, `{"sub":"7","exp":9e9,"iat":1}`),
		"exp with a leading zero": signRaw(hs256, fmt.Sprintf(`{"sub":"7","exp":0%d,"iat":1}`, exp)),
		"exp past 2262":           signRaw(hs256, `{"sub":"7","exp":99999999999,"iat":1}`),
		"exp twice":               signRaw(hs256, fmt.Sprintf(`{"sub":"7","exp":%d,"exp":1,"iat":1}`, exp)),
		"claims reordered":        signRaw(hs256, fmt.Sprintf(`{"exp":%d,"sub":"7","iat":1}`, exp)),
		"a space":                 signRaw(hs256, fmt.Sprintf(`{"sub":"7", "exp":%d,"iat":1}`, exp)),
		"trailing text":           signRaw(hs256, fmt.Sprintf(`{"sub":"7","exp":%d,"iat":1} `, exp)),
		"private claim":           signRaw(hs256, fmt.Sprintf(`{"sub":"7","exp":%d,"iat":1,"role":"x"}`, exp)),
		"escaped sub":             signRaw(hs256, fmt.Sprintf(`{"\u0073ub":"7","exp":%d,"iat":1}`, exp)),
		"header respelt":          signRaw(`{"typ":"JWT","alg":"HS256"}`, fmt.Sprintf(`{"sub":"7","exp":%d,"iat":1}`, exp)),
		"HS512 header":            signRaw(`{"alg":"HS512","typ":"JWT"}`, fmt.Sprintf(`{"sub":"7","exp":%d,"iat":1}`, exp)),
	}
	for name, tok := range declined {
		if agree(t, h, tok, now) {
			t.Errorf("%s: the fast path decided a token not of SignUserToken's shape", name)
		}
	}
}

// TestParseUserFastPathRefusesExpired: a token the fast path reads as
// expired is refused and not remembered; once valid it is remembered.
func TestParseUserFastPathRefusesExpired(t *testing.T) {
	now := time.Now()
	h := fastFixture(t, now)
	old := must(SignUserTokenAt([]byte(benchSecret), 9, now.Add(-2*time.Hour), time.Hour))
	if id, err := h.parseUser(old); err == nil {
		t.Fatalf("expired token: got user %d", id)
	}
	if _, ok := h.users.Get(digestOf(old)); ok {
		t.Error("expired token remembered as verified")
	}
	tok := must(SignUserTokenAt([]byte(benchSecret), 9, now, time.Hour))
	if id, err := h.parseUser(tok); err != nil || id != 9 {
		t.Fatalf("got %d, %v; want 9", id, err)
	}
	if v, ok := h.users.Get(digestOf(tok)); !ok || v.id != 9 || v.exp != now.Truncate(time.Second).Add(time.Hour).UnixNano() {
		t.Errorf("remembered %+v, %v", v, ok)
	}
}

// FuzzUserFast: for any claims text signed with the right key (and with
// the signature spoilt), the fast path either declines or agrees with the
// library.
func FuzzUserFast(f *testing.F) {
	exp := time.Now().Add(time.Hour).Unix()
	for _, s := range []string{
		fmt.Sprintf(`{"sub":"7","exp":%d,"iat":1}`, exp),
		`{"sub":"7","exp":1,"iat":1}`,
		`{"sub":"18446744073709551617","exp":1,"iat":1}`,
		`{"sub":"7","exp":9223372036,"iat":1}`,
		`{"sub":"7","exp":9223372037,"iat":1}`,
		`{"sub":"7","exp":00,"iat":1}`,
		`{"sub":"7","exp":1,"iat":1}x`,
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	now := time.Now()
	h := fastFixture(f, now)
	f.Fuzz(func(t *testing.T, claims string, spoil bool) {
		tok := signRaw(`{"alg":"HS256","typ":"JWT"}`, claims)
		if spoil {
			tok = tok[:len(tok)-2] + "AA"
		}
		agree(t, h, tok, now)
	})
}

// BenchmarkFirstUserVerification: a buyer's first token check, by the
// fast path and by the library (every buyer of a sale is new once).
func BenchmarkFirstUserVerification(b *testing.B) {
	now := time.Now()
	h := fastFixture(b, now)
	toks := make([]string, 4096)
	for i := range toks {
		toks[i] = must(SignUserTokenAt([]byte(benchSecret), int64(1_000_000+i), now, time.Hour))
	}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, _, ok, done := h.userFast(toks[i%len(toks)], now.UnixNano()); !ok || !done {
				b.Fatal("not verified")
			}
		}
	})
	b.Run("library", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, _, err := h.userLibrary(toks[i%len(toks)]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
