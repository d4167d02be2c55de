package contract

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// TestCheckCatchesDrift: the validator is only worth its runs if it fails
// the exchanges the spec rules out, and passes the ones it allows.
func TestCheckCatchesDrift(t *testing.T) {
	v := Default(t)
	problem := func(status int, title, code string) string {
		return `{"type":"about:blank","title":"` + title + `","status":` + strconv.Itoa(status) + `,"code":"` + code + `"}`
	}
	problemHdr := http.Header{"Content-Type": {"application/problem+json"}, "Cache-Control": {"no-store"}}
	jsonHdr := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
	item := `{"id":1,"name":"x","stock":1,"shards":1,"per_user_limit":1,"starts_at":"2030-01-01T00:00:00Z","created_at":"2030-01-01T00:00:00Z","paused":false,"remaining":1,"sold_out":false,"stale":false}`
	tests := []struct {
		name, method, target, bearer string
		status                       int
		header                       http.Header
		body                         string
		wantErr                      string // "" for a valid exchange
	}{
		{"item", "GET", "/api/v1/items/1", "", 200, jsonHdr, item, ""},
		{"item without remaining", "GET", "/api/v1/items/1", "", 200, jsonHdr, strings.Replace(item, `"remaining":1,`, "", 1), "remaining"},
		{"item without stale", "GET", "/api/v1/items/1", "", 200, jsonHdr, strings.Replace(item, `,"stale":false`, "", 1), "stale"},
		{"item with a bad time", "GET", "/api/v1/items/1", "", 200, jsonHdr, strings.Replace(item, "2030-01-01T00:00:00Z", "soon", 1), "date-time"},
		{"undocumented status", "GET", "/api/v1/items/1", "", 418, problemHdr, problem(418, "I'm a teapot", "internal"), "status is not supported"},
		{"200 to a bad id", "GET", "/api/v1/items/abc", "", 200, jsonHdr, item, "the spec refuses"},
		{"400 to a bad id", "GET", "/api/v1/items/abc", "", 400, problemHdr, problem(400, "Bad Request", "invalid_request"), ""},
		{"problem repeating another status", "GET", "/api/v1/items/abc", "", 400, problemHdr, problem(404, "Not Found", "not_found"), "problem says 404"},
		{"unknown code", "GET", "/api/v1/items/abc", "", 400, problemHdr, problem(400, "Bad Request", "oops"), "code"},
		{"redirect of an unlisted path", "GET", "/api/v1/items/1/", "", 301, http.Header{}, "", "undocumented route"},
		{"404 of an unlisted path", "GET", "/api/v1/items/1/", "", 404, problemHdr, problem(404, "Not Found", "not_found"), ""},
		{"401 without a challenge", "POST", "/api/v1/items/1/tokens", "", 401, problemHdr, problem(401, "Unauthorized", "unauthorized"), "WWW-Authenticate"},
		{"401 refusing a sent token", "POST", "/api/v1/items/1/tokens", "x", 401,
			http.Header{"Content-Type": {"application/problem+json"}, "Cache-Control": {"no-store"},
				"Www-Authenticate": {`Bearer realm="seckill", error="invalid_token", error_description="bad"`}},
			problem(401, "Unauthorized", "unauthorized"), ""},
		{"503 without Retry-After", "GET", "/readyz", "", 503, problemHdr, problem(503, "Service Unavailable", "unavailable"), "Retry-After"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.target, nil)
			if tt.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+tt.bearer)
			}
			err := v.Check(context.Background(), Exchange{Request: req, Status: tt.status, Header: tt.header, Body: []byte(tt.body)})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("got %v, want a valid exchange", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("got %v, want an error about %q", err, tt.wantErr)
			}
		})
	}
}
