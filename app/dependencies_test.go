package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"

	"seckill/app"
	"seckill/app/apptest"
	"seckill/app/testenv"
)

// serveConfig is a valid configuration over the test's own Redis prefix,
// MySQL database and Kafka broker, with vars layered over it.
func serveConfig(t *testing.T, vars map[string]string) app.Config {
	t.Helper()
	_, prefix := testenv.Redis(t)
	dsn, _ := testenv.MySQL(t)
	all := map[string]string{
		"SECKILL_HTTP_ADDR":     "127.0.0.1:0",
		"SECKILL_REDIS_PREFIX":  prefix,
		"SECKILL_MYSQL_DSN":     dsn,
		"SECKILL_ADMIN_TOKEN":   apptest.AdminToken,
		"SECKILL_JWT_SECRET":    apptest.JWTSecret,
		"SECKILL_PURCHASE_KEY":  apptest.PurchaseKey,
		"SECKILL_KAFKA_BROKERS": strings.Join(testenv.Kafka(t), ","),
	}
	for k, v := range testenv.RedisEnv() {
		all[k] = v
	}
	for k, v := range vars {
		all[k] = v
	}
	cfg, err := app.LoadConfig(func(k string) string { return all[k] })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestStartRefusesEvictingRedis: a Redis whose maxmemory-policy may evict
// keys is refused at start, with a message naming the server, its policy
// and why.
func TestStartRefusesEvictingRedis(t *testing.T) {
	srv := testenv.PrivateRedis(t, "--maxmemory-policy", "allkeys-lru")
	cfg := serveConfig(t, map[string]string{"SECKILL_REDIS_ADDR": srv.Addr, "SECKILL_REDIS_MODE": "single"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := app.Start(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		cancel()
		s.Wait()
		t.Fatal("started on an allkeys-lru Redis: want a refusal")
	}
	want := "redis " + srv.Addr + ": maxmemory-policy is allkeys-lru; seckill needs noeviction: an evicting Redis drops stock shards"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("got %q, want it to say %q", err, want)
	}
}

// TestEvictionPolicyChangedAtRuntime: a Redis set to evict keys while the
// app runs makes readiness fail and purchases and token issues answer 503
// with Retry-After; set back to noeviction, both recover.
func TestEvictionPolicyChangedAtRuntime(t *testing.T) {
	srv := testenv.PrivateRedis(t)
	file := filepath.Join(t.TempDir(), "seckill.yaml")
	if err := os.WriteFile(file, []byte("redis:\n  policy_check: 50ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startApp(t, map[string]string{"SECKILL_REDIS_ADDR": srv.Addr, "SECKILL_REDIS_MODE": "single", "SECKILL_CONFIG": file})
	it := a.createItem(map[string]any{"name": "evict", "price_minor": 1000, "currency": "EUR", "stock": 10, "shards": 2, "per_user_limit": 1})
	buyer := userToken(t, 1)
	key := a.purchaseToken(it.ID, buyer)
	c := srv.Client()
	defer c.Close()
	ctx := context.Background()

	ready := func() int {
		code, _ := a.call("GET", "/readyz", "", nil, nil, nil)
		return code
	}
	until := func(what string, cond func() bool) {
		t.Helper()
		end := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(end) {
				t.Fatalf("%s: not within 15s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := c.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	until("readiness fails", func() bool { return ready() == http.StatusServiceUnavailable })
	var p struct {
		Code   string `json:"code"`
		Detail string `json:"detail"`
	}
	code, hdr := a.call("POST", fmt.Sprintf("/api/v1/items/%d/purchase", it.ID), buyer, nil, map[string]string{"Idempotency-Key": key}, &p)
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(p.Detail, "evict") {
		t.Errorf("purchase while evicting: %d %+v (Retry-After %q), want 503 saying why, with Retry-After", code, p, hdr.Get("Retry-After"))
	}
	code, hdr = a.call("POST", fmt.Sprintf("/api/v1/items/%d/tokens", it.ID), userToken(t, 2), nil, nil, &p)
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Errorf("token issue while evicting: %d %+v, want 503 with Retry-After", code, p)
	}
	if !strings.Contains(a.Log.String(), "maxmemory-policy is allkeys-lru") {
		t.Errorf("the log does not name the policy:\n%s", a.Log)
	}

	if err := c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	until("ready again", func() bool { return ready() == http.StatusOK })
	if code, ans := a.purchase(it.ID, buyer, key); code != http.StatusAccepted {
		t.Errorf("purchase after noeviction: %d %+v, want 202", code, ans)
	}
}

// TestStartWaitsForLoadingRedis: a Redis still loading its data set when
// the app starts (it answers LOADING) is waited for, with the log saying
// so, and then the app serves.
func TestStartWaitsForLoadingRedis(t *testing.T) {
	srv := testenv.PrivateRedis(t)
	c := srv.Client()
	defer c.Close()
	ctx := context.Background()
	pipe := c.Pipeline()
	for i := range 2000 {
		pipe.Set(ctx, fmt.Sprintf("fill:%d", i), i, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// 1ms a key: about 2s of loading, during which it answers LOADING.
	srv.Restart("--key-load-delay", "1000", "--loading-process-events-interval-bytes", "1024")
	c = srv.Client() // the old one's connections died with the server
	defer c.Close()
	if err := c.Ping(ctx).Err(); !redis.IsLoadingError(err) {
		t.Fatalf("redis after restart: PING got %v, want LOADING (the test needs a loading Redis)", err)
	}
	a := startApp(t, map[string]string{"SECKILL_REDIS_ADDR": srv.Addr, "SECKILL_REDIS_MODE": "single"})
	if !strings.Contains(a.Log.String(), "waiting for redis: loading") {
		t.Errorf("the log does not say it waited for a loading Redis:\n%s", a.Log)
	}
	it := a.createItem(map[string]any{"name": "after-load", "price_minor": 1000, "currency": "EUR", "stock": 1, "shards": 1, "per_user_limit": 1})
	buyer := userToken(t, 1)
	if code, ans := a.purchase(it.ID, buyer, a.purchaseToken(it.ID, buyer)); code != http.StatusAccepted {
		t.Errorf("purchase: %d %+v, want 202", code, ans)
	}
	if n, err := c.DBSize(ctx).Result(); err != nil || n < 2000 {
		t.Errorf("keys after the load: %d, %v; want the 2000 loaded and more", n, err)
	}
}

// forward is a TCP proxy from a listener on addr to target, owned by the
// test; cut closes it and every connection through it (a server gone), and
// runs when the test ends.
func forward(t *testing.T, addr, target string) (cut func()) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(s, c); s.Close() }()
			go func() { defer wg.Done(); io.Copy(c, s); c.Close() }()
		}
	}()
	var once sync.Once
	cut = func() {
		once.Do(func() {
			ln.Close()
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
			wg.Wait()
		})
	}
	t.Cleanup(cut)
	return cut
}

// TestStartWaitsForMySQL: a MySQL not reachable yet at start is waited
// for, with the log saying so; once it answers, the app starts.
func TestStartWaitsForMySQL(t *testing.T) {
	dsn, _ := testenv.MySQL(t)
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	target := mc.Addr
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mc.Addr = ln.Addr().String()
	ln.Close() // nothing listens there until the proxy starts
	cfg := serveConfig(t, map[string]string{"SECKILL_MYSQL_DSN": mc.FormatDSN()})
	logs := &apptest.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type started struct {
		s   *app.Server
		err error
	}
	done := make(chan started, 1)
	go func() {
		s, err := app.Start(ctx, cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
		done <- started{s, err}
	}()
	var r started
	received := false
	defer func() { // a failed test still stops the start and waits for it
		cancel()
		if !received {
			r = <-done
		}
		if r.s != nil {
			r.s.Wait()
		}
	}()
	end := time.Now().Add(15 * time.Second)
	for !strings.Contains(logs.String(), "waiting for mysql: not reachable") {
		if time.Now().After(end) {
			t.Fatalf("no \"waiting for mysql\" in the log within 15s:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	forward(t, mc.Addr, target)
	select {
	case r = <-done:
		received = true
	case <-time.After(30 * time.Second):
		t.Fatalf("not started 30s after MySQL came up:\n%s", logs)
	}
	if r.err != nil {
		t.Fatalf("start: %v\n%s", r.err, logs)
	}
}

// TestOrderStatusWhileMySQLIsDown: with MySQL gone, an accepted order
// still reads pending, marked stale (the answer checked against the API
// contract), and an id Redis does not know is 503 with Retry-After, not 404.
func TestOrderStatusWhileMySQLIsDown(t *testing.T) {
	dsn, _ := testenv.MySQL(t)
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := mc.Addr
	mc.Addr = ln.Addr().String()
	ln.Close()
	cut := forward(t, mc.Addr, target)
	a := startApp(t, map[string]string{"SECKILL_MYSQL_DSN": mc.FormatDSN()})
	it := a.createItem(map[string]any{"name": "stale", "price_minor": 1000, "currency": "EUR", "stock": 5, "shards": 1, "per_user_limit": 1})
	buyer := userToken(t, 1)
	code, ans := a.purchase(it.ID, buyer, a.purchaseToken(it.ID, buyer))
	if code != http.StatusAccepted {
		t.Fatalf("purchase: %d %+v, want 202", code, ans)
	}

	cut()
	var o struct {
		Status string `json:"status"`
		Stale  bool   `json:"stale"`
	}
	if code, _ := a.call("GET", "/api/v1/orders/"+ans.OrderID, buyer, nil, nil, &o); code != http.StatusOK || o.Status != "pending" || !o.Stale {
		t.Errorf("order with MySQL down: %d %+v, want 200 pending, stale", code, o)
	}
	code, hdr := a.call("GET", "/api/v1/orders/"+ans.OrderID, userToken(t, 2), nil, nil, nil)
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Errorf("another user's order with MySQL down: %d, want 503 with Retry-After (never 404)", code)
	}
}
