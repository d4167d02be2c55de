package handler

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"seckill/app/testenv"
	"seckill/handler/contract"
	"seckill/limiter/breaker"
	"seckill/order"
	"seckill/order/sale"
	"seckill/stock"
)

type pageBody struct {
	Remaining int64 `json:"remaining"`
	SoldOut   bool  `json:"sold_out"`
	Stale     *bool `json:"stale"`
}

// pageServer is the API over a sale of its own on st and orders, whose
// product pages read the count again every refresh, checked against the
// contract.
func pageServer(t *testing.T, st *stock.Store, orders *order.Store, refresh time.Duration) http.Handler {
	t.Helper()
	s := sale.New(sale.Config{Stock: st, Orders: orders, PageRefresh: refresh})
	h, err := New(Deps{Sale: s, AdminToken: benchAdmin, JWTSecret: benchSecret, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return contract.Handler(t, h.Routes())
}

func getPage(t *testing.T, serve http.Handler, id int64) (*httptest.ResponseRecorder, pageBody) {
	t.Helper()
	w := httptest.NewRecorder()
	serve.ServeHTTP(w, httptest.NewRequest(http.MethodGet, fmt.Sprintf("/api/v1/items/%d", id), nil))
	var b pageBody
	if w.Code == http.StatusOK {
		if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
			t.Errorf("page body %s: %v", w.Body, err)
		}
	}
	return w, b
}

func wantPage(t *testing.T, what string, w *httptest.ResponseRecorder, b pageBody, remaining int64, stale bool) {
	t.Helper()
	if w.Code != http.StatusOK || b.Remaining != remaining || b.SoldOut || b.Stale == nil || *b.Stale != stale {
		t.Errorf("%s: got %d %s; want 200, remaining %d, stale %v", what, w.Code, w.Body, remaining, stale)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "public, max-age=1" {
		t.Errorf("%s: Cache-Control %q, want public, max-age=1", what, cc)
	}
}

// TestProductPageFromMemory: concurrent views of a product page, answered
// as the contract says, cost one Redis read between them, not one per view
// (or one per shard), and may be cached for a second.
func TestProductPageFromMemory(t *testing.T) {
	f := newFixture(t, 10, 8)
	// An interval no run of this test outlasts, even under -race.
	serve := pageServer(t, f.stock, f.orders, time.Hour)
	before := f.hook.n.Load()
	const views = 32
	var wg sync.WaitGroup
	for range views {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, b := getPage(t, serve, f.item.ID)
			wantPage(t, "view", w, b, 10, false)
		}()
	}
	wg.Wait()
	if n := f.hook.n.Load() - before; n != 1 {
		t.Errorf("%d concurrent views: %d Redis calls, want 1", views, n)
	}
}

// TestProductPageWhileRedisStalls: with Redis stalled, the page of an item
// this instance read still answers 200, with its last count, marked stale
// (as the contract documents); one it never read answers 503 with
// Retry-After.
func TestProductPageWhileRedisStalls(t *testing.T) {
	if testenv.RedisCluster() {
		t.Skip("the stalled client talks to one server; the stock keys are on several")
	}
	f := newFixture(t, 10, 8)
	ctx := context.Background()
	never, err := f.orders.CreateItem(ctx, order.Item{Name: "never viewed", Stock: 3, Shards: 2, PerUserLimit: 1,
		StartsAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.stock.Warm(ctx, never.ID, never.Stock, never.Shards); err != nil {
		t.Fatal(err)
	}
	const budget = 500 * time.Millisecond
	proxy := testenv.NewProxy(t, testenv.RedisAddr())
	breakers := breaker.NewSet(breaker.Config{Failures: 1, OpenFor: time.Minute})
	t.Cleanup(breakers.Close)
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr, MaxRetries: -1, DialTimeout: budget,
		ReadTimeout: budget, WriteTimeout: budget, PoolTimeout: budget, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	breaker.GuardRedis(rdb, breakers.Get("redis"), budget)
	st := stock.NewStore(rdb, stock.Config{Prefix: f.stock.Prefix()})
	// Every view is due a read: the interval is as short as can be.
	serve := pageServer(t, st, f.orders, time.Nanosecond)

	w, b := getPage(t, serve, f.item.ID)
	wantPage(t, "healthy", w, b, 10, false)
	proxy.Stall()
	w, b = getPage(t, serve, f.item.ID) // waits out the budget, opens the breaker
	wantPage(t, "stalled", w, b, 10, true)
	w, b = getPage(t, serve, f.item.ID)
	wantPage(t, "breaker open", w, b, 10, true)
	w, _ = getPage(t, serve, never.ID)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("an item never read: got %d %s (Retry-After %q), want 503 with Retry-After",
			w.Code, w.Body, w.Header().Get("Retry-After"))
	}
}

// BenchmarkProductPageChain is a product page view through the whole Gin
// chain without the HTTP server: what a view costs once its count is in
// memory (next to BenchmarkSoldOutChain and a bare Gin hello).
func BenchmarkProductPageChain(b *testing.B) {
	f := newFixture(b, 10, 8)
	req := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/api/v1/items/%d", f.item.ID), nil)
	benchChain(b, f, []*http.Request{req}, http.StatusOK)
}
