// Package apptest boots the whole seckill app for tests: on a free port,
// against the real Redis (a key prefix of its own, in the tests' mode:
// single or cluster) and MySQL (a fresh database), with an in-process Kafka
// broker unless told otherwise.
package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"seckill/app"
	"seckill/app/testenv"
	"seckill/handler/contract"
)

// Secrets of every app booted here.
const (
	AdminToken = "test-admin-token"
	JWTSecret  = "test-jwt-secret-0123456789"
	// PurchaseKey signs purchase tokens.
	PurchaseKey = "test-purchase-key-0123456789"
	// PaymentSecret signs payment callbacks (SECKILL_PAYMENTS_CALLBACK_SECRET).
	PaymentSecret = "test-payment-secret-0123456789"
)

// App is a running app.
type App struct {
	Server *app.Server
	// Base is the app's URL, e.g. http://127.0.0.1:12345.
	Base string
	// DB is a handle on the app's MySQL database; Prefix its Redis keys.
	DB     *sqlx.DB
	Prefix string
	// Log holds what the app logged at warn level and above.
	Log *Buffer
	// DSN is the app's MySQL database.
	DSN string
	// Client is an HTTP client for the app that checks every answer
	// against handler/openapi.yaml and fails the test on a mismatch.
	Client *http.Client

	stop func()
}

// Stop stops the app and waits until it has closed everything; Stop is
// also called when the test ends.
func (a *App) Stop() { a.stop() }

// Start boots the app; env overrides the test defaults. It is stopped when
// the test ends, and its log is printed if the test failed.
func Start(t testing.TB, env map[string]string) *App {
	t.Helper()
	// A second app may share the first one's Redis prefix and database
	// (a restart); otherwise it gets its own.
	prefix, dsn := env["SECKILL_REDIS_PREFIX"], env["SECKILL_MYSQL_DSN"]
	if prefix == "" {
		_, prefix = testenv.Redis(t)
	}
	var db *sqlx.DB
	if dsn == "" {
		dsn, db = testenv.MySQL(t)
	} else {
		var err error
		if db, err = sqlx.Open("mysql", dsn); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
	}
	vars := map[string]string{
		"SECKILL_HTTP_ADDR":    "127.0.0.1:0",
		"SECKILL_REDIS_PREFIX": prefix,
		"SECKILL_MYSQL_DSN":    dsn,
		"SECKILL_ADMIN_TOKEN":  AdminToken,
		"SECKILL_JWT_SECRET":   JWTSecret,
		"SECKILL_PURCHASE_KEY": PurchaseKey,
		// The demo pay button, as the tests of payments by the buyer use it.
		"SECKILL_PAYMENTS_DEMO_PAY":        "true",
		"SECKILL_PAYMENTS_CALLBACK_SECRET": PaymentSecret,
		"SECKILL_KAFKA_PARTITIONS":         "4",
		"SECKILL_LIMIT_USER_RATE":          "1000",
		// A fall-through cut short by a slow test Redis is settled soon.
		"SECKILL_CLAIM_TIMEOUT":       "1s",
		"SECKILL_LIMIT_GLOBAL_RATE":   "1000000",
		"SECKILL_LIMIT_MAX_IN_FLIGHT": "100000",
		// The budget of one Redis call: a burst of purchases under -race on
		// a loaded 2-core machine can keep a call waiting past the
		// production 500ms, which would open the breaker mid-test. The
		// tests of the budget and the breaker set their own.
		"SECKILL_REDIS_TIMEOUT": "2s",
	}
	// The test Redis in the tests' mode (a cluster's seeds with
	// SECKILL_REDIS_MODE=cluster under SECKILL_TEST_REDIS_MODE=cluster).
	for k, v := range testenv.RedisEnv() {
		vars[k] = v
	}
	if _, ok := env["SECKILL_KAFKA_BROKERS"]; !ok {
		vars["SECKILL_KAFKA_BROKERS"] = strings.Join(testenv.Kafka(t), ",")
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := app.LoadConfig(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Kafka.SessionTimeout = 2 * time.Second
	logs := &Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := app.Start(ctx, cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		cancel()
		t.Fatalf("start app: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := srv.Wait(); err != nil {
				t.Errorf("app stopped with: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() && logs.Len() > 0 {
			t.Logf("app log (warn and above):\n%s", logs)
		}
	})
	// Sized for the tests' races: thousands of buyers at once.
	client := &http.Client{Timeout: 30 * time.Second,
		Transport: contract.Transport(t, &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512})}
	return &App{Server: srv, Base: "http://" + srv.Addr, DB: db, Prefix: vars["SECKILL_REDIS_PREFIX"], DSN: vars["SECKILL_MYSQL_DSN"], Log: logs, Client: client, stop: stop}
}

// CreateItem creates an item through the admin API (POST
// /api/v1/admin/items with body, the item's JSON) and returns its id; the
// test fails unless the app answers 201. It sends with
// http.DefaultClient, so a body the contract does not allow reaches the app.
func (a *App) CreateItem(t testing.TB, body string) int64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, a.Base+"/api/v1/admin/items", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var item struct {
		ID int64 `json:"id"`
	}
	json.NewDecoder(resp.Body).Decode(&item)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create item: got status %d, want 201", resp.StatusCode)
	}
	return item.ID
}

// Buffer is a bytes.Buffer safe for concurrent writers.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Len is the number of bytes written so far.
func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Len()
}
