package handler

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"seckill/app/testenv"
	"seckill/handler/contract"
	"seckill/limiter"
	"seckill/order"
	"seckill/order/lifecycle"
	"seckill/order/sale"
	"seckill/order/token"
	"seckill/stock"
)

const (
	benchAdmin  = "admin"
	benchSecret = "bench-secret-0123456789"
	// benchPaySecret signs payment callbacks (payments_test.go).
	benchPaySecret = "bench-pay-secret-0123456789"
)

// countHook counts commands sent to Redis.
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// seqIDs makes ids from one sequence, each for the group asked, as one
// instance does; they start past 2^53 as real ids do.
type seqIDs struct{ n *atomic.Int64 }

func (s seqIDs) NextID(g int) (int64, error) { return stock.WithGroup(s.n.Add(1)<<22, g), nil }

type fixture struct {
	engine *gin.Engine
	// serve is the engine as tests call it: checked against openapi.yaml
	// in tests, bare in benchmarks, whose numbers the checks would skew.
	serve  http.Handler
	stock  *stock.Store
	orders *order.Store
	tokens *token.Keys
	hook   *countHook
	item   order.Item
	// sweeper expires orders and returns units (Sweep); it also returns
	// cancelled orders' units for the sale.
	sweeper *lifecycle.Sweeper
	reg     *prometheus.Registry
}

func newFixture(tb testing.TB, stockUnits int64, shards int) *fixture {
	tb.Helper()
	rdb, prefix := testenv.Redis(tb)
	_, db := testenv.MySQL(tb)
	hook := &countHook{}
	rdb.AddHook(hook)
	st := stock.NewStore(rdb, stock.Config{Prefix: prefix})
	orders := order.NewStore(db)
	ids := seqIDs{new(atomic.Int64)}
	ids.n.Store(1 << 38)
	reg := prometheus.NewRegistry()
	lim, err := limiter.New(limiter.Config{MaxInFlight: 4096, AcquireWait: 50 * time.Millisecond}, reg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(lim.Close)
	tokens, err := token.NewKeys(token.Key{ID: 1, Secret: []byte(benchSecret)})
	if err != nil {
		tb.Fatal(err)
	}
	sw, err := lifecycle.NewSweeper(st, orders, lifecycle.SweeperConfig{}, reg, nil)
	if err != nil {
		tb.Fatal(err)
	}
	h, err := New(Deps{Sale: sale.New(sale.Config{Stock: st, Orders: orders, Limiter: lim, IDs: ids, Tokens: tokens, Returns: sw}),
		AdminToken: benchAdmin, JWTSecret: benchSecret, Registry: reg,
		Payments: Payments{CallbackSecret: benchPaySecret, DemoPay: true}})
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	it, err := orders.CreateItem(ctx, order.Item{Name: "bench", Stock: stockUnits, Shards: shards, PerUserLimit: 1,
		StartsAt: time.Now().Add(-time.Minute), PriceMinor: 1999, Currency: "EUR"})
	if err != nil {
		tb.Fatal(err)
	}
	if err := st.Warm(ctx, it.ID, it.Stock, it.Shards); err != nil {
		tb.Fatal(err)
	}
	engine := h.Routes()
	var serve http.Handler = engine
	if t, ok := tb.(*testing.T); ok {
		serve = contract.Handler(t, engine)
	}
	return &fixture{engine: engine, serve: serve, stock: st, orders: orders, tokens: tokens, hook: hook, item: it, sweeper: sw, reg: reg}
}

// buyer is a user with a signed JWT and a purchase token.
type buyer struct{ jwt, key string }

func (f *fixture) buyers(tb testing.TB, n int, firstUser int64) []buyer {
	tb.Helper()
	out := make([]buyer, n)
	var wg sync.WaitGroup
	const workers = 16
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				u := firstUser + int64(i)
				jwt, _ := SignUserToken([]byte(benchSecret), u, time.Hour)
				key, _, err := f.tokens.Issue(f.item.ID, u, time.Now().Add(time.Hour))
				if err != nil {
					tb.Error(err)
					return
				}
				out[i] = buyer{jwt, key}
			}
		}()
	}
	wg.Wait()
	return out
}

func (f *fixture) purchase(b buyer) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, fmt.Sprintf("/api/v1/items/%d/purchase", f.item.ID), nil)
	req.Header.Set("Authorization", "Bearer "+b.jwt)
	req.Header.Set("Idempotency-Key", b.key)
	w := httptest.NewRecorder()
	f.serve.ServeHTTP(w, req)
	return w
}

// TestPurchaseIsOneRoundTrip: in the common case (home shard has stock) a
// purchase makes exactly one round trip to Redis; once sold out, one per new
// key (it reads the key's stored answer) and none for a key answered before.
func TestPurchaseIsOneRoundTrip(t *testing.T) {
	f := newFixture(t, 64, 1)
	bs := f.buyers(t, 70, 1)
	if w := f.purchase(bs[0]); w.Code != http.StatusAccepted { // loads the script and the item cache
		t.Fatalf("warm-up purchase: %d %s", w.Code, w.Body)
	}
	for i := 1; i < 64; i++ {
		before := f.hook.n.Load()
		if w := f.purchase(bs[i]); w.Code != http.StatusAccepted {
			t.Fatalf("purchase %d: %d %s", i, w.Code, w.Body)
		}
		if got := f.hook.n.Load() - before; got != 1 {
			t.Fatalf("purchase %d made %d Redis calls, want 1", i, got)
		}
	}
	if w := f.purchase(bs[64]); w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), `"sold_out"`) {
		t.Fatalf("after the last unit: %d %s, want 409 sold_out", w.Code, w.Body)
	}
	before := f.hook.n.Load()
	for i := 65; i < 70; i++ {
		if w := f.purchase(bs[i]); w.Code != http.StatusConflict {
			t.Fatalf("sold-out purchase: %d %s", w.Code, w.Body)
		}
	}
	if got := f.hook.n.Load() - before; got != 5 {
		t.Errorf("5 sold-out purchases with new keys made %d Redis calls, want 5", got)
	}
	before = f.hook.n.Load()
	for i := 0; i < 70; i++ { // every key again: answered from memory
		want := http.StatusAccepted
		if i >= 64 {
			want = http.StatusConflict
		}
		if w := f.purchase(bs[i]); w.Code != want {
			t.Fatalf("retry %d: %d %s, want %d", i, w.Code, w.Body, want)
		}
	}
	if got := f.hook.n.Load() - before; got != 0 {
		t.Errorf("retried keys made %d Redis calls, want 0", got)
	}
}

func runParallel(b *testing.B, f *fixture, bs []buyer, want int) {
	var next atomic.Int64
	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			i := next.Add(1) - 1
			t0 := time.Now()
			w := f.purchase(bs[i%int64(len(bs))])
			local = append(local, time.Since(t0))
			if w.Code != want {
				b.Errorf("purchase: %d %s, want %d", w.Code, w.Body, want)
				return
			}
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	}
}

// BenchmarkPurchase is the accepted purchase through the Gin handler chain
// (auth, limiter, item cache, one Lua call) against the real Redis.
func BenchmarkPurchase(b *testing.B) {
	f := newFixture(b, int64(b.N)+1, 8)
	bs := f.buyers(b, b.N, 1)
	b.SetParallelism(16)
	runParallel(b, f, bs, http.StatusAccepted)
}

// BenchmarkPurchaseSoldOut is the refused purchase once the local sold-out
// flag is set: no Redis call.
func BenchmarkPurchaseSoldOut(b *testing.B) {
	f := newFixture(b, 0, 8)
	bs := f.buyers(b, 256, 1)
	f.purchase(bs[0]) // learns the item is sold out
	b.SetParallelism(16)
	runParallel(b, f, bs, http.StatusConflict)
}

func TestUserTokenCacheHonoursExpiry(t *testing.T) {
	now := time.Now()
	h, err := New(Deps{AdminToken: "a", JWTSecret: benchSecret, Registry: prometheus.NewRegistry(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := SignUserToken([]byte(benchSecret), 7, time.Minute)
	for i := 0; i < 2; i++ { // verified, then from the cache
		if id, err := h.parseUser(tok); err != nil || id != 7 {
			t.Fatalf("parse %d: got %d, %v; want 7, nil", i, id, err)
		}
	}
	now = now.Add(2 * time.Minute)
	if _, ok := h.users.Get(digestOf(tok)); !ok {
		t.Fatal("token not cached")
	}
	if id, err := h.parseUser(tok); err == nil {
		t.Errorf("expired cached token: got user %d, want an error", id)
	}
	forged := tok[:len(tok)-2] + "xx"
	if _, err := h.parseUser(forged); err == nil {
		t.Error("forged signature accepted")
	}
}

// TestOrderNotInMySQLIsPending: an accepted order not yet in MySQL (in the
// outbox or in Kafka: the fixture runs no writer) reads as pending for its
// buyer, is not payable yet, and does not exist for anyone else.
func TestOrderNotInMySQLIsPending(t *testing.T) {
	f := newFixture(t, 1, 1)
	const buyer, other = 7, 8
	b := f.buyers(t, 1, buyer)[0]
	w := f.purchase(b)
	var pv purchaseView
	if w.Code != http.StatusAccepted || json.Unmarshal(w.Body.Bytes(), &pv) != nil {
		t.Fatalf("purchase: %d %s", w.Code, w.Body)
	}
	orderID := pv.OrderID
	do := func(method, path string, user int64) *httptest.ResponseRecorder {
		jwt, _ := SignUserToken([]byte(benchSecret), user, time.Hour)
		req := httptest.NewRequest(method, path, nil)
		req.Header.Set("Authorization", "Bearer "+jwt)
		w := httptest.NewRecorder()
		f.serve.ServeHTTP(w, req)
		return w
	}
	path := "/api/v1/orders/" + orderID
	if w := do("GET", path, buyer); w.Code != 200 || !strings.Contains(w.Body.String(), `"status":"pending"`) {
		t.Errorf("buyer reads: %d %s, want 200 pending", w.Code, w.Body)
	}
	if w := do("POST", path+"/pay", buyer); w.Code != 409 || !strings.Contains(w.Body.String(), CodeOrderPending) || w.Header().Get("Retry-After") == "" {
		t.Errorf("buyer pays: %d %s, want 409 order_pending with Retry-After", w.Code, w.Body)
	}
	if w := do("GET", path, other); w.Code != 404 {
		t.Errorf("another user reads: %d, want 404", w.Code)
	}
}

// TestOtherUsersOrderIsAMissingOne: another user's stored order answers
// what a missing id answers, byte for byte, after the same Redis reads (the
// probe timed the 404 of another user's order 100 µs faster than a missing
// id's: it skipped the order index read, an existence oracle).
func TestOtherUsersOrderIsAMissingOne(t *testing.T) {
	f := newFixture(t, 1, 1)
	const buyer, other = 7, 8
	w := f.purchase(f.buyers(t, 1, buyer)[0])
	var pv purchaseView
	if w.Code != http.StatusAccepted || json.Unmarshal(w.Body.Bytes(), &pv) != nil {
		t.Fatalf("purchase: %d %s", w.Code, w.Body)
	}
	id, _ := strconv.ParseInt(pv.OrderID, 10, 64)
	// The row the writer would store: the order is in MySQL, and its
	// index entry is still in Redis.
	now := time.Now().UTC().Truncate(time.Millisecond)
	if _, _, err := f.orders.InsertBatch(context.Background(), []order.Order{{ID: id, ItemID: f.item.ID, UserID: buyer,
		Status: order.StatusPending, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	jwt, _ := SignUserToken([]byte(benchSecret), other, time.Hour)
	get := func(id int64) (*httptest.ResponseRecorder, int64) {
		before := f.hook.n.Load()
		w := f.do("GET", "/api/v1/orders/"+strconv.FormatInt(id, 10), jwt, "", nil)
		return w, f.hook.n.Load() - before
	}
	if w, _ := get(id); w.Code != http.StatusNotFound { // warm: the same state for both below
		t.Fatalf("another user's order: got %d %s, want 404", w.Code, w.Body)
	}
	theirs, theirTrips := get(id)
	missing, missingTrips := get(stock.WithGroup(id+1<<22, stock.OrderGroup(id)))
	if theirs.Code != http.StatusNotFound || theirs.Body.String() != missing.Body.String() ||
		!maps.EqualFunc(theirs.Header(), missing.Header(), slices.Equal) {
		t.Errorf("another user's order: %d %v %s; a missing id: %d %v %s; want the same answer",
			theirs.Code, theirs.Header(), theirs.Body, missing.Code, missing.Header(), missing.Body)
	}
	if theirTrips != missingTrips || theirTrips == 0 {
		t.Errorf("Redis round trips: another user's order %d, a missing id %d; want the same, the order index read",
			theirTrips, missingTrips)
	}
}

// TestCreatedItemWithNoStockIsSoldOut: an item created with stock 0 is sold
// out in the 201 as in a GET (the probe saw sold_out false in the 201).
func TestCreatedItemWithNoStockIsSoldOut(t *testing.T) {
	f := newFixture(t, 1, 1)
	w := f.do("POST", "/api/v1/admin/items", benchAdmin, `{"name":"none","price_minor":1000,"currency":"EUR","stock":0}`, nil)
	if w.Code != http.StatusCreated {
		t.Fatalf("create: got %d %s, want 201", w.Code, w.Body)
	}
	var created itemView
	if err := json.Unmarshal(w.Body.Bytes(), &created); err != nil {
		t.Fatal(err)
	}
	r := f.do("GET", w.Header().Get("Location"), "", "", nil)
	var read itemView
	if r.Code != http.StatusOK || json.Unmarshal(r.Body.Bytes(), &read) != nil {
		t.Fatalf("GET: %d %s", r.Code, r.Body)
	}
	if !created.SoldOut || !read.SoldOut || created.Remaining != 0 {
		t.Errorf("stock 0: created sold_out=%v remaining=%d, read sold_out=%v; want sold out in both",
			created.SoldOut, created.Remaining, read.SoldOut)
	}
}
