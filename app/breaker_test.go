package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"seckill/app/testenv"
	"seckill/order/sale"
)

// TestRedisStallFailsFastAndRecovers: Redis stops answering (a proxy that
// keeps connections open and forwards nothing). Purchases answer 503 with
// Retry-After; once the Redis breaker opened, each answer comes at once
// instead of after a Redis timeout, and /readyz names redis. When the
// stall heals, sales resume and the node id lease is re-confirmed at once,
// not at its next refresh 10 s after start. Before the breakers each
// answer waited for Redis (3 to 4 s with the old retries) and the lease
// for its tick.
func TestRedisStallFailsFastAndRecovers(t *testing.T) {
	if testenv.RedisCluster() {
		t.Skip("the stall proxy stands in front of one Redis server")
	}
	rdb, _ := testenv.Redis(t)
	proxy := testenv.NewProxy(t, testenv.RedisAddr())
	started := time.Now()
	a := startApp(t, map[string]string{
		"SECKILL_REDIS_ADDR": proxy.Addr, "SECKILL_REDIS_MODE": "single",
		"SECKILL_REDIS_TIMEOUT": "300ms", "SECKILL_BREAKER_OPEN_FOR": "1s",
	})
	ctx := context.Background()
	marks := testenv.Keys(ctx, rdb, a.Prefix+":node-mark:*")
	if len(marks) != 1 {
		t.Fatalf("node id marks %v, want one", marks)
	}
	mark := func() int64 {
		n, err := rdb.Get(ctx, marks[0]).Int64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	mark0 := mark()

	it := a.createItem(map[string]any{"name": "stall", "price_minor": 1000, "currency": "EUR", "stock": 100, "shards": 2})
	const buyers = 40
	keys := make([]string, buyers)
	jwts := make([]string, buyers)
	for i := range keys {
		jwts[i] = userToken(t, int64(900_000+i))
		keys[i] = a.purchaseToken(it.ID, jwts[i])
	}
	if code, _ := a.purchase(it.ID, jwts[0], keys[0]); code != http.StatusAccepted {
		t.Fatalf("purchase before the stall: %d, want 202", code)
	}

	proxy.Stall()
	// Until the breaker opens answers wait for the Redis budget; after it,
	// every answer must be at once.
	buyer, opened, fast := 1, false, 0
	var tookOpen []time.Duration
	for ; buyer < buyers && fast < 10; buyer++ {
		start := time.Now()
		code, hdr, p := a.purchaseProblem(it.ID, jwts[buyer], keys[buyer])
		took := time.Since(start)
		if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
			t.Fatalf("purchase during the stall: %d Retry-After %q, want 503 with Retry-After", code, hdr.Get("Retry-After"))
		}
		if opened {
			tookOpen = append(tookOpen, took)
			fast++
		}
		opened = opened || p.Detail == sale.ErrDependencyDown.Message
	}
	if fast < 10 {
		t.Fatalf("%d answers after the breaker opened (of %d during the stall), want 10: the breaker never opened", fast, buyer-1)
	}
	// The median, not each one: under -race on a loaded machine one answer
	// can wait for a CPU as long as for Redis; waiting for Redis is every
	// answer's 300ms.
	slices.Sort(tookOpen)
	if med := tookOpen[len(tookOpen)/2]; med >= 100*time.Millisecond {
		t.Errorf("answers after the breaker opened took %v (median %v), want a median < 100ms", tookOpen, med)
	}
	var ready struct {
		Detail  string   `json:"detail"`
		Failing []string `json:"failing"`
	}
	if code, hdr := a.call("GET", "/readyz", "", nil, nil, &ready); code != http.StatusServiceUnavailable ||
		hdr.Get("Retry-After") == "" || len(ready.Failing) != 1 || ready.Failing[0] != "redis" {
		t.Errorf("/readyz during the stall: %d %+v, want 503 failing [redis] with Retry-After", code, ready)
	}

	proxy.Heal()
	healed := time.Now()
	resumed := false
	for !resumed && time.Since(healed) < 5*time.Second && buyer < buyers {
		code, _, _ := a.purchaseProblem(it.ID, jwts[buyer], keys[buyer])
		buyer++
		resumed = code == http.StatusAccepted
		if !resumed {
			time.Sleep(50 * time.Millisecond) // pacing the retries, not synchronising
		}
	}
	if !resumed {
		t.Fatalf("no purchase accepted within 5s of the heal")
	}
	// The lease's refresh raises the mark to now + TTL: at once after the
	// heal, where its tick would come 10 s after start.
	deadline := time.Now().Add(2 * time.Second)
	for mark() == mark0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if mark() == mark0 {
		t.Fatalf("node id lease not re-confirmed within 2s of the heal (%v after start)", time.Since(started))
	}
	if since := time.Since(started); since >= 10*time.Second {
		t.Fatalf("inconclusive: the test took %v, past the lease's own refresh", since)
	}
}

// problem is the part of a problem answer the test reads.
type problem struct {
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// purchaseProblem is a purchase with its headers and problem body.
func (a *testApp) purchaseProblem(itemID int64, jwt, key string) (int, http.Header, problem) {
	a.t.Helper()
	var raw json.RawMessage
	code, hdr := a.call("POST", fmt.Sprintf("/api/v1/items/%d/purchase", itemID), jwt, nil, map[string]string{"Idempotency-Key": key}, &raw)
	var p problem
	if code >= 400 {
		if err := json.Unmarshal(raw, &p); err != nil {
			a.t.Fatalf("purchase %d: %s: %v", code, raw, err)
		}
	}
	return code, hdr, p
}
