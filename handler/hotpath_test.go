package handler

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"seckill/limiter"
	"seckill/order"
	"seckill/order/sale"
	"seckill/stock"
)

// TestToProblem checks the fast paths of toProblem (a bare *Problem or
// sentinel) answer what the errors.Is/As paths answer for the same error
// wrapped, and that the stores' sentinels are answered as the sale's
// outcomes they stand for.
func TestToProblem(t *testing.T) {
	lim, err := limiter.New(limiter.Config{UserRate: 0.001, UserBurst: 1}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	release, err := lim.Acquire(context.Background(), 1)
	if err != nil {
		t.Fatalf("first acquire: %v", err)
	}
	release()
	_, rejection := lim.Acquire(context.Background(), 1) // the bucket is empty for ~1000s
	var rej *limiter.Rejection
	if !errors.As(rejection, &rej) || rej.RetryAfter <= time.Second {
		t.Fatalf("second acquire: got %v, want a rejection with a long Retry-After", rejection)
	}
	wantRetry := fmt.Sprint(int(rej.RetryAfter / time.Second))

	tests := []struct {
		name     string
		err      error
		status   int
		code     string
		retry    string // Retry-After header, "" for none
		internal bool
	}{
		{"bare sentinel", stock.ErrSoldOut, 409, CodeSoldOut, "", false},
		{"wrapped sentinel", fmt.Errorf("reserve item 1: %w", stock.ErrSoldOut), 409, CodeSoldOut, "", false},
		{"order sentinel", order.ErrNotFound, 404, CodeNotFound, "", false},
		{"bare retryable sentinel", stock.ErrNotReady, 503, CodeUnavailable, "1", false},
		{"bare problem", errNotJSON, 415, CodeUnsupportedMediaType, "", false},
		{"wrapped problem", fmt.Errorf("read key: %w", errDuplicateKey), 400, CodeInvalidRequest, "", false},
		{"bare sale outcome", sale.ErrEnded, 410, CodeSaleEnded, "", false},
		{"wrapped sale outcome", fmt.Errorf("check window: %w", sale.ErrNotStarted), 403, CodeSaleNotStarted, "", false},
		{"sale outcome with a cause", fmt.Errorf("purchase: %w", sale.ErrorOf(rejection)), 429, CodeRateLimited, wantRetry, false},
		{"bare limiter sentinel", limiter.ErrLimited, 429, CodeRateLimited, "1", false},
		{"limiter rejection", rejection, 429, CodeRateLimited, wantRetry, false},
		{"cancelled", fmt.Errorf("reserve: %w", context.Canceled), 499, CodeUnavailable, "", false},
		{"dependency failure", errors.New("dial tcp: connection refused"), 503, CodeUnavailable, "1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, internal := toProblem(tt.err)
			if p.Status != tt.status || p.Code != tt.code || internal != tt.internal {
				t.Errorf("got %d %s internal=%v, want %d %s internal=%v", p.Status, p.Code, internal, tt.status, tt.code, tt.internal)
			}
			w := httptest.NewRecorder()
			c, _ := gin.CreateTestContext(w)
			writeProblem(c, p)
			if w.Code != tt.status {
				t.Errorf("written status: got %d, want %d", w.Code, tt.status)
			}
			if got := w.Header().Get("Retry-After"); got != tt.retry {
				t.Errorf("Retry-After: got %q, want %q", got, tt.retry)
			}
			if got := w.Header().Get("Content-Type"); got != "application/problem+json" {
				t.Errorf("Content-Type: got %q, want application/problem+json", got)
			}
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control: got %q, want no-store", got)
			}
			if want := `"code":"` + tt.code + `"`; !strings.Contains(w.Body.String(), want) {
				t.Errorf("body: got %s, want it to contain %s", w.Body, want)
			}
		})
	}
	// The rejection's copy must not change the shared row.
	if p, _ := toProblem(limiter.ErrLimited); p.retryAfter != time.Second {
		t.Errorf("shared rate_limited row: got Retry-After %v, want 1s", p.retryAfter)
	}
}

// TestRequestMetrics checks the cached series count every request under
// its route template, method and status, matched or not.
func TestRequestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	h, err := New(Deps{AdminToken: benchAdmin, JWTSecret: benchSecret, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	r := h.Routes()
	do := func(method, path string, n int) {
		for range n {
			r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(method, path, nil))
		}
	}
	do("GET", "/healthz", 3)
	do("GET", "/nope", 2)
	do("BREW", "/pot", 1)                     // any method string: still the one unmatched series
	do("POST", "/api/v1/items/7/purchase", 4) // no token: 401
	do("POST", "/api/v1/items/8/purchase", 1)

	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	samples := map[string]string{}
	sc := bufio.NewScanner(w.Body)
	for sc.Scan() {
		if name, value, ok := strings.Cut(sc.Text(), " "); ok && !strings.HasPrefix(name, "#") {
			samples[name] = value
		}
	}
	tests := []struct{ series, want string }{
		{`seckill_http_requests_total{method="GET",route="/healthz",status="200"}`, "3"},
		{`seckill_http_requests_total{method="any",route="unmatched",status="404"}`, "3"},
		{`seckill_http_requests_total{method="POST",route="/api/v1/items/:id/purchase",status="401"}`, "5"},
		{`seckill_http_request_duration_seconds_count{method="GET",route="/healthz"}`, "3"},
		{`seckill_http_request_duration_seconds_count{method="POST",route="/api/v1/items/:id/purchase"}`, "5"},
	}
	for _, tt := range tests {
		if got := samples[tt.series]; got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.series, got, tt.want)
		}
	}
}

// TestSoldOutReplay: once the item is sold out locally, the buyer's own key
// still gets its 202 and order id, without Redis, and nobody else gets that
// answer with the same key.
func TestSoldOutReplay(t *testing.T) {
	f := newFixture(t, 1, 1)
	bs := f.buyers(t, 3, 1)
	first := f.purchase(bs[0])
	if first.Code != http.StatusAccepted {
		t.Fatalf("first purchase: got %d %s, want 202", first.Code, first.Body)
	}
	if w := f.purchase(bs[1]); w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), `"sold_out"`) {
		t.Fatalf("second buyer: got %d %s, want 409 sold_out", w.Code, w.Body)
	}
	if !f.stock.SoldOut(f.item.ID) {
		t.Fatal("sold-out flag: got unset, want set after every shard was seen empty")
	}
	before := f.hook.n.Load()
	tests := []struct {
		name   string
		b      buyer
		status int
		body   string
	}{
		{"own key replayed", bs[0], http.StatusAccepted, first.Body.String()},
		// Another user's key is refused in process (its signature names
		// its user); once sold out a key nobody answered yet costs one
		// Redis call: the key's stored answer (never a unit).
		{"another user with that key", buyer{jwt: bs[2].jwt, key: bs[0].key}, http.StatusForbidden, ""},
		{"another user's own key", bs[2], http.StatusConflict, ""},
		{"that key again", bs[2], http.StatusConflict, ""},
	}
	for _, tt := range tests {
		w := f.purchase(tt.b)
		if w.Code != tt.status {
			t.Errorf("%s: got %d %s, want %d", tt.name, w.Code, w.Body, tt.status)
		}
		if tt.body != "" && w.Body.String() != tt.body {
			t.Errorf("%s: got body %s, want %s", tt.name, w.Body, tt.body)
		}
	}
	if got := f.hook.n.Load() - before; got != 1 {
		t.Errorf("Redis calls after sell-out: got %d, want 1 (one per valid key not answered before)", got)
	}
}

// headerWriter is an http.ResponseWriter that keeps the status and header
// and drops the body, for measuring the handler chain alone.
type headerWriter struct {
	h    http.Header
	code int
}

func (w *headerWriter) Header() http.Header         { return w.h }
func (w *headerWriter) WriteHeader(code int)        { w.code = code }
func (w *headerWriter) Write(b []byte) (int, error) { return len(b), nil }

// soldOutRequests returns sold-out purchase requests of n buyers, each
// answered once already, and the fixture they run against.
func soldOutRequests(tb testing.TB, n int) (*fixture, []*http.Request) {
	tb.Helper()
	f := newFixture(tb, 0, 8)
	bs := f.buyers(tb, n, 1)
	reqs := make([]*http.Request, n)
	for i, b := range bs {
		req := httptest.NewRequest(http.MethodPost, fmt.Sprintf("/api/v1/items/%d/purchase", f.item.ID), nil)
		req.Header.Set("Authorization", "Bearer "+b.jwt)
		req.Header.Set("Idempotency-Key", b.key)
		reqs[i] = req
		w := &headerWriter{h: http.Header{}}
		f.engine.ServeHTTP(w, req) // learns the flag, caches the token
		if w.code != http.StatusConflict {
			tb.Fatalf("warm-up %d: got %d, want 409", i, w.code)
		}
	}
	return f, reqs
}

// BenchmarkSoldOutChain is the sold-out answer through the whole Gin chain
// (recovery, metrics, auth, purchase, problem) without the HTTP server or a
// recorder: the per-request cost the product adds to bare Gin.
func BenchmarkSoldOutChain(b *testing.B) {
	f, reqs := soldOutRequests(b, 256)
	benchChain(b, f, reqs, http.StatusConflict)
}

// benchChain serves reqs in turn through f's engine on every P, each
// answered with want.
func benchChain(b *testing.B, f *fixture, reqs []*http.Request, want int) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &headerWriter{h: http.Header{}}
		for i := 0; pb.Next(); i++ {
			clear(w.h)
			f.engine.ServeHTTP(w, reqs[i%len(reqs)])
			if w.code != want {
				b.Errorf("got %d, want %d", w.code, want)
				return
			}
		}
	})
}

// BenchmarkTokenChain is a purchase token issue through the whole Gin chain
// (recovery, metrics, auth with a JWT seen before, admission, signing, the
// answer) without the HTTP server: what a token costs the crowd beyond a
// bare Gin hello.
func BenchmarkTokenChain(b *testing.B) {
	f := newFixture(b, 10, 8)
	bs := f.buyers(b, 256, 1)
	reqs := make([]*http.Request, len(bs))
	for i, by := range bs {
		req := httptest.NewRequest(http.MethodPost, fmt.Sprintf("/api/v1/items/%d/tokens", f.item.ID), nil)
		req.Header.Set("Authorization", "Bearer "+by.jwt)
		reqs[i] = req
		w := &headerWriter{h: http.Header{}}
		f.engine.ServeHTTP(w, req) // verifies the JWT once
		if w.code != http.StatusCreated {
			b.Fatalf("warm-up %d: got %d, want 201", i, w.code)
		}
	}
	benchChain(b, f, reqs, http.StatusCreated)
}
