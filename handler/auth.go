package handler

import (
	"crypto/subtle"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
)

// header is the first value of a request header. The key must be in
// canonical form: net/http stores incoming keys that way, so a plain map
// lookup replaces Header.Get's canonicalisation on the hot path.
func header(c *gin.Context, canonicalKey string) string {
	if v := c.Request.Header[canonicalKey]; len(v) > 0 {
		return v[0]
	}
	return ""
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
	now := time.Now()
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   strconv.FormatInt(userID, 10),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}).SignedString(secret)
}

// verifiedUser is a user token that passed verification, until it expires.
type verifiedUser struct {
	id  int64
	exp time.Time
}

// parseUser verifies a user token and returns its user id. A token already
// verified is only checked for expiry: same bytes, same signature.
func (h *Handler) parseUser(tok string) (int64, error) {
	if v, ok := h.users.get(tok); ok && h.Now().Before(v.exp) {
		return v.id, nil
	}
	var claims jwt.RegisteredClaims
	_, err := h.parser.ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return h.jwtSecret, nil })
	if err != nil {
		return 0, err
	}
	id, err := strconv.ParseInt(claims.Subject, 10, 64)
	if err != nil || id <= 0 {
		return 0, errors.New("sub is not a positive user id")
	}
	h.users.add(tok, verifiedUser{id: id, exp: claims.ExpiresAt.Time})
	return id, nil
}

// asUser admits requests with a valid user token and hands the user id to
// fn, which runs only then. The id is an argument rather than a c.Set
// value: c.Set allocates the context's key map on every request.
func (h *Handler) asUser(fn func(c *gin.Context, user int64) error) func(*gin.Context) error {
	return func(c *gin.Context) error {
		id, err := h.parseUser(bearer(c))
		if err != nil {
			return errUnauthorized
		}
		return fn(c, id)
	}
}

// requireAdmin admits requests bearing the admin token. The comparison takes
// the same time whatever the token.
func (h *Handler) requireAdmin(c *gin.Context) {
	if subtle.ConstantTimeCompare([]byte(bearer(c)), h.adminToken) != 1 {
		writeProblem(c, errUnauthorized)
		c.Abort()
		return
	}
}
