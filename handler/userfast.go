package handler

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"hash"
	"math"
	"strings"
	"sync"
	"time"
)

// The first verification of a user token is most of what a new buyer
// costs the crowd's paths: golang-jwt decodes the header into a map, our
// strict checks decode it again, and the claims go through a name scan and
// encoding/json (about 6 us and 60 allocations). SignUserToken writes one
// shape only; userFast verifies exactly that shape by hand, for the same
// answer the library path gives (TestUserFastAgreesWithTheLibrary and
// FuzzUserFast hold them together), and declines everything else, which
// then takes the library path and its strict checks as before.

// canonicalHeader is the header segment SignUserToken writes:
// {"alg":"HS256","typ":"JWT"} in base64url.
const canonicalHeader = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"

// sigLen is the length of an HS256 signature in unpadded base64url.
var sigLen = base64.RawURLEncoding.EncodedLen(sha256.Size)

// strictB64 is the decoding the parser uses (jwt.WithStrictDecoding): no
// padding and no non-zero padding bits, so a segment has one spelling.
var strictB64 = base64.RawURLEncoding.Strict()

// macPool holds HMAC-SHA256 states keyed with the user-token secret.
type macPool struct{ p sync.Pool }

func newMACPool(secret []byte) *macPool {
	key := append([]byte(nil), secret...)
	return &macPool{p: sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}
}

// userFast verifies tok if it has exactly the shape SignUserToken writes:
// the canonical header, claims {"sub":"<id>","exp":<n>,"iat":<n>} in that
// order with integers in canonical decimal, and a canonical signature.
// done is false when tok has another shape (or a wrong signature): the
// caller then verifies it the library's way, which gives the error. When
// done is true, ok says whether the token is valid now (nowUnixNano): its
// only failure then is expiry, exp <= now, as the library's validator
// reads exp (exp is required; iat is not checked; no nbf).
func (h *Handler) userFast(tok string, nowUnixNano int64) (id, expNano int64, ok, done bool) {
	rest, found := strings.CutPrefix(tok, canonicalHeader+".")
	if !found {
		return 0, 0, false, false
	}
	dot := strings.IndexByte(rest, '.')
	if dot < 0 || len(rest)-dot-1 != sigLen {
		return 0, 0, false, false
	}
	payload, sig := rest[:dot], rest[dot+1:]
	// Both copies on the stack: the token's text is not copied to the heap.
	var enc [256]byte
	var claims [192]byte
	if len(payload) > len(enc) {
		return 0, 0, false, false
	}
	n, err := strictB64.Decode(claims[:], enc[:copy(enc[:], payload)])
	if err != nil {
		return 0, 0, false, false
	}
	sub, exp, good := canonicalClaims(claims[:n])
	if !good {
		return 0, 0, false, false
	}
	// The signature, compared in its canonical text: a segment that
	// decodes to the same bytes in another spelling does not match it.
	m := h.macs.p.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(tok[:len(canonicalHeader)+1+dot]))
	var mac [sha256.Size]byte
	var want [43]byte
	base64.RawURLEncoding.Encode(want[:], m.Sum(mac[:0]))
	h.macs.p.Put(m)
	if subtle.ConstantTimeCompare(want[:], []byte(sig)) != 1 {
		return 0, 0, false, false
	}
	// exp as the library reads it: seconds; valid while now < exp.
	if exp > math.MaxInt64/int64(time.Second) {
		return 0, 0, false, false
	}
	expNano = exp * 1e9
	return sub, expNano, nowUnixNano < expNano, true
}

// canonicalClaims reads claims of exactly the form
// {"sub":"<id>","exp":<n>,"iat":<n>}: sub a positive id and exp and iat
// non-negative integers, all in canonical decimal (no sign, no leading
// zero, no fraction or exponent) of at most 18 digits. Any other text is
// not read (ok false).
func canonicalClaims(b []byte) (sub, exp int64, ok bool) {
	if b, ok = bytes.CutPrefix(b, []byte(`{"sub":"`)); !ok {
		return 0, 0, false
	}
	if sub, b, ok = canonicalInt(b); !ok || sub == 0 {
		return 0, 0, false
	}
	if b, ok = bytes.CutPrefix(b, []byte(`","exp":`)); !ok {
		return 0, 0, false
	}
	if exp, b, ok = canonicalInt(b); !ok {
		return 0, 0, false
	}
	if b, ok = bytes.CutPrefix(b, []byte(`,"iat":`)); !ok {
		return 0, 0, false
	}
	if _, b, ok = canonicalInt(b); !ok || string(b) != "}" {
		return 0, 0, false
	}
	return sub, exp, true
}

// canonicalInt reads a non-negative integer in canonical decimal of at
// most 18 digits at the start of b, and returns what follows it.
func canonicalInt(b []byte) (v int64, rest []byte, ok bool) {
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		if i == 18 {
			return 0, nil, false
		}
		v = v*10 + int64(b[i]-'0')
		i++
	}
	if i == 0 || i > 1 && b[0] == '0' {
		return 0, nil, false
	}
	return v, b[i:], true
}
