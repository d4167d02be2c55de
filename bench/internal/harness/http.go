package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// SignJWT is the bearer token of user (subject: its decimal id), signed
// HS256 with secret (SECKILL_JWT_SECRET), valid for ttl.
func SignJWT(secret string, user int64, ttl time.Duration) string {
	now := time.Now()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   strconv.FormatInt(user, 10),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}).SignedString([]byte(secret))
	if err != nil {
		panic(err)
	}
	return s
}

// Request is one call of the seckill API.
type Request struct {
	Method, URL string
	Bearer      string            // Authorization: Bearer, if not ""
	Header      map[string]string // more headers
	JSON        any               // the body, sent as JSON, if not nil
}

// Reply is one answer of the seckill API.
type Reply struct {
	Status     int
	Code       string // the problem+json code of a 4xx or 5xx
	RetryAfter string // the Retry-After header
	Body       []byte // at most MaxBody bytes
}

// MaxBody is how much of an answer's body Do reads.
const MaxBody = 4 << 20

// Do sends r with hc and reads the answer. An error is a transport error
// (or a body that could not be encoded or read).
func Do(ctx context.Context, hc *http.Client, r Request) (Reply, error) {
	var rd io.Reader
	if r.JSON != nil {
		b, err := json.Marshal(r.JSON)
		if err != nil {
			return Reply{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, r.URL, rd)
	if err != nil {
		return Reply{}, err
	}
	if r.Bearer != "" {
		req.Header.Set("Authorization", "Bearer "+r.Bearer)
	}
	if r.JSON != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody))
	if err != nil {
		return Reply{}, err
	}
	out := Reply{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After"), Body: b}
	if resp.StatusCode >= 400 {
		var p struct {
			Code string `json:"code"`
		}
		_ = json.Unmarshal(b, &p)
		out.Code = p.Code
	}
	return out, nil
}

// Status GETs url with hc and returns the status code (the body is read
// and dropped, so the connection is reused).
func Status(hc *http.Client, url string) (int, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}
