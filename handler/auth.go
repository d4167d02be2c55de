package handler

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
)

// header is the value of a request header sent once; "" when it is absent
// or repeated, as a repeated one is ambiguous and no check may pass on the
// value the sender did not mean. Names match case-insensitively: net/http
// stores incoming names canonical, so with the key in canonical form a
// plain map lookup replaces Header.Get's canonicalisation on the hot path.
// The value is returned as sent, to be compared exactly.
func header(c *gin.Context, canonicalKey string) string {
	if v := c.Request.Header[canonicalKey]; len(v) == 1 {
		return v[0]
	}
	return ""
}

// oneIdempotencyKey refuses a request with more than one Idempotency-Key:
// the server must not guess which one the client meant to decide the
// purchase, and a replay must not depend on the guess.
func oneIdempotencyKey(fn func(c *gin.Context, user int64) error) func(c *gin.Context, user int64) error {
	return func(c *gin.Context, user int64) error {
		if len(c.Request.Header["Idempotency-Key"]) > 1 {
			return errDuplicateKey
		}
		return fn(c, user)
	}
}

func bearer(c *gin.Context) string {
	h := header(c, "Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// SignUserToken makes the HS256 user token the API accepts: sub = user id.
func SignUserToken(secret []byte, userID int64, ttl time.Duration) (string, error) {
	return SignUserTokenAt(secret, userID, time.Now(), ttl)
}

// SignUserTokenAt is SignUserToken issued at now (tools that make tokens
// ahead of a load test). The one place user tokens are signed.
func SignUserTokenAt(secret []byte, userID int64, now time.Time, ttl time.Duration) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   strconv.FormatInt(userID, 10),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}).SignedString(secret)
}

// verifiedUser is a user token that passed verification, until it expires
// (Unix nanoseconds): no pointers, so the memory of verified tokens is
// never scanned by the garbage collector.
type verifiedUser struct {
	id, exp int64
}

// tokenDigest is the SHA-256 of a user token: what the memory of verified
// tokens is keyed by. A collision is out of reach, so a digest stands for
// its token; it keeps 32 bytes per token instead of the token (and the
// request's header memory it points into).
type tokenDigest [sha256.Size]byte

func digestOf(tok string) tokenDigest {
	// Copied into a buffer on the stack: the []byte conversion of a token
	// this long would allocate.
	var buf [1024]byte
	if len(tok) <= len(buf) {
		return sha256.Sum256(buf[:copy(buf[:], tok)])
	}
	return sha256.Sum256([]byte(tok))
}

// newUserParser is the parser of user tokens, as strict as its options
// make it: HS256 only (no "none", no other key type), exp required, and
// every segment in canonical base64url (the strict decoder refuses
// non-zero padding bits, so one signature has one spelling). The claims
// and the header add their own checks (userClaims, checkHeader): one
// spelling per name, no name twice, JSON types as RFC 7519 gives them.
func newUserParser(now func() time.Time) *jwt.Parser {
	return jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithExpirationRequired(),
		jwt.WithStrictDecoding(), jwt.WithTimeFunc(now))
}

// parseUser verifies a user token and returns its user id. A token already
// verified is only checked for expiry: same bytes, same signature (the
// memory is keyed by the digest of the token as sent, and holds only
// tokens that passed every check, so no other spelling gets in by it).
// The subject is a positive id in canonical decimal, as SignUserToken
// writes it.
func (h *Handler) parseUser(tok string) (int64, error) {
	key := digestOf(tok)
	now := h.Now().UnixNano()
	if v, ok := h.users.Get(key); ok && now < v.exp {
		return v.id, nil
	}
	id, exp, ok, done := h.userFast(tok, now)
	switch {
	case !done:
		var err error
		if id, exp, err = h.userLibrary(tok); err != nil {
			return 0, err
		}
	case !ok:
		return 0, jwt.ErrTokenExpired
	}
	h.users.Add(key, verifiedUser{id: id, exp: exp})
	return id, nil
}

// userLibrary verifies a user token with golang-jwt and our strict checks
// of its header and claims: every token userFast declines comes here.
func (h *Handler) userLibrary(tok string) (id, expNano int64, err error) {
	var claims userClaims
	_, err = h.parser.ParseWithClaims(tok, &claims, func(t *jwt.Token) (any, error) {
		if err := h.checkHeader(t); err != nil {
			return nil, err
		}
		return h.jwtSecret, nil
	})
	if err != nil {
		return 0, 0, err
	}
	id, ok := positiveID(claims.Subject)
	if !ok {
		return 0, 0, errors.New("sub is not a positive user id")
	}
	return id, claims.ExpiresAt.Time.UnixNano(), nil
}

// asUser admits requests with a valid user token and hands the user id to
// fn, which runs only then. The id is an argument rather than a c.Set
// value: c.Set allocates the context's key map on every request.
func (h *Handler) asUser(fn func(c *gin.Context, user int64) error) func(*gin.Context) error {
	return func(c *gin.Context) error {
		tok := bearer(c)
		if tok == "" {
			return errNoToken
		}
		id, err := h.parseUser(tok)
		if err != nil {
			return errBadToken
		}
		return fn(c, id)
	}
}

// requireAdmin admits requests bearing the admin token. The comparison takes
// the same time whatever the token.
func (h *Handler) requireAdmin(c *gin.Context) {
	tok := bearer(c)
	switch {
	case tok == "":
		writeProblem(c, errNoToken)
	case subtle.ConstantTimeCompare([]byte(tok), h.adminToken) != 1:
		writeProblem(c, errBadToken)
	default:
		return
	}
	c.Abort()
}
