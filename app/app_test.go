package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/twmb/franz-go/pkg/kfake"

	"seckill/app"
	"seckill/app/apptest"
	"seckill/app/testenv"
	"seckill/handler"
)

const (
	testAdmin  = apptest.AdminToken
	testSecret = apptest.JWTSecret
)

// testApp is a running app with an HTTP client.
type testApp struct {
	*apptest.App
	t      *testing.T
	base   string
	db     *sqlx.DB
	client *http.Client
}

// startApp boots the whole app against the real Redis and MariaDB and an
// in-process Kafka broker; env overrides the test defaults.
func startApp(t *testing.T, env map[string]string) *testApp {
	t.Helper()
	a := apptest.Start(t, env)
	return &testApp{App: a, t: t, base: a.Base, db: a.DB, client: a.Client}
}

// call sends a request and decodes a JSON answer into out (if not nil).
func (a *testApp) call(method, path, bearer string, body any, hdr map[string]string, out any) (int, http.Header) {
	a.t.Helper()
	code, h, err := a.send(method, path, bearer, body, hdr, out)
	if err != nil {
		a.t.Errorf("%s %s: %v", method, path, err)
	}
	return code, h
}

// send is call that returns a failure of the connection (code 0) instead
// of reporting it.
func (a *testApp) send(method, path, bearer string, body any, hdr map[string]string, out any) (int, http.Header, error) {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		js, _ := json.Marshal(b)
		rd = bytes.NewReader(js)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			a.t.Errorf("%s %s: decode %q: %v", method, path, data, err)
		}
	}
	return resp.StatusCode, resp.Header, nil
}

func userToken(t testing.TB, user int64) string {
	t.Helper()
	tok, err := handler.SignUserToken([]byte(testSecret), user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type item struct {
	ID        int64 `json:"id"`
	Stock     int64 `json:"stock"`
	Shards    int   `json:"shards"`
	Remaining int64 `json:"remaining"`
}

func (a *testApp) createItem(body map[string]any) item {
	a.t.Helper()
	var it item
	if code, _ := a.call("POST", "/api/v1/admin/items", testAdmin, body, nil, &it); code != http.StatusCreated {
		a.t.Fatalf("create item: status %d, want 201", code)
	}
	return it
}

func (a *testApp) purchaseToken(itemID int64, jwt string) string {
	a.t.Helper()
	var out struct {
		Token string `json:"token"`
	}
	if code, _ := a.call("POST", fmt.Sprintf("/api/v1/items/%d/tokens", itemID), jwt, nil, nil, &out); code != http.StatusCreated {
		a.t.Fatalf("issue token: status %d, want 201", code)
	}
	return out.Token
}

type answer struct {
	OrderID string `json:"order_id"`
	Status  any    `json:"status"`
	Code    string `json:"code"`
	Token   string `json:"token"` // of a token request
}

func (a *testApp) purchase(itemID int64, jwt, key string) (int, answer) {
	var out answer
	code, _ := a.call("POST", fmt.Sprintf("/api/v1/items/%d/purchase", itemID), jwt, nil, map[string]string{"Idempotency-Key": key}, &out)
	return code, out
}

// purchaseRetried is purchase as a client in a crowd makes it: a
// connection the server dropped before it answered (thousands of
// connections opened at once on a loaded test machine; the server's
// header read timeout) is sent again with the same key, which the
// purchase token makes safe. Only the last failure is reported.
func (a *testApp) purchaseRetried(itemID int64, jwt, key string) (int, answer) {
	var out answer
	var err error
	for try := 0; try < 5; try++ {
		var code int
		out = answer{}
		if code, _, err = a.send("POST", fmt.Sprintf("/api/v1/items/%d/purchase", itemID), jwt, nil,
			map[string]string{"Idempotency-Key": key}, &out); err == nil {
			return code, out
		}
	}
	a.t.Errorf("purchase item %d: %v (5 tries)", itemID, err)
	return 0, out
}

// waitRows waits until the orders table holds want rows.
func (a *testApp) waitRows(itemID int64, want int, within time.Duration) {
	a.t.Helper()
	deadline := time.Now().Add(within)
	var n int
	for time.Now().Before(deadline) {
		if err := a.db.Get(&n, "SELECT COUNT(*) FROM orders WHERE item_id = ?", itemID); err == nil && n >= want {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n != want {
		a.t.Fatalf("orders rows %d, want %d", n, want)
	}
}

func TestContract(t *testing.T) {
	a := startApp(t, nil)
	it := a.createItem(map[string]any{"name": "phone", "price_minor": 1000, "currency": "EUR", "stock": 2, "shards": 2})
	if it.ID <= 0 || it.Stock != 2 || it.Shards != 2 || it.Remaining != 2 {
		t.Fatalf("created item %+v, want id>0 stock 2 shards 2 remaining 2", it)
	}
	var got item
	if code, _ := a.call("GET", fmt.Sprintf("/api/v1/items/%d", it.ID), "", nil, nil, &got); code != 200 || got.Remaining != 2 {
		t.Errorf("get item: %d %+v, want 200 remaining 2", code, got)
	}

	u1, u2, u3 := userToken(t, 1), userToken(t, 2), userToken(t, 3)
	k1 := a.purchaseToken(it.ID, u1)
	code, first := a.purchase(it.ID, u1, k1)
	if code != http.StatusAccepted || first.OrderID == "" || first.Status != "pending" {
		t.Fatalf("purchase: %d %+v, want 202 pending with order id", code, first)
	}
	if code, again := a.purchase(it.ID, u1, k1); code != http.StatusAccepted || again != first {
		t.Errorf("replay: %d %+v, want 202 %+v", code, again, first)
	}
	// Second key of the same user: limit 1. Replays say the same.
	k1b := a.purchaseToken(it.ID, u1)
	for i := 0; i < 2; i++ {
		if code, p := a.purchase(it.ID, u1, k1b); code != http.StatusConflict || p.Code != handler.CodePurchaseLimit {
			t.Errorf("over limit try %d: %d %+v, want 409 purchase_limit", i, code, p)
		}
	}
	k2 := a.purchaseToken(it.ID, u2)
	for _, tc := range []struct {
		name, jwt, key string
		status         int
		code           string
	}{
		{"no key", u3, "", 403, handler.CodeTokenInvalid},
		{"another user's key", u3, k2, 403, handler.CodeTokenInvalid},
		{"no user token", "", k2, 401, handler.CodeUnauthorized},
		{"bad user token", "x.y.z", k2, 401, handler.CodeUnauthorized},
	} {
		if code, p := a.purchase(it.ID, tc.jwt, tc.key); code != tc.status || p.Code != tc.code {
			t.Errorf("%s: %d %q, want %d %q", tc.name, code, p.Code, tc.status, tc.code)
		}
	}
	k3 := a.purchaseToken(it.ID, u3) // fetched before the sell-out, as a crowd does
	if code, p := a.purchase(it.ID, u2, k2); code != http.StatusAccepted {
		t.Fatalf("second buyer: %d %+v, want 202", code, p)
	}
	for i := 0; i < 2; i++ {
		if code, p := a.purchase(it.ID, u3, k3); code != http.StatusConflict || p.Code != handler.CodeSoldOut {
			t.Errorf("sold out try %d: %d %+v, want 409 sold_out", i, code, p)
		}
	}
	// The instance knows the item sold out now: no token for it.
	var p answer
	if code, _ := a.call("POST", fmt.Sprintf("/api/v1/items/%d/tokens", it.ID), u3, nil, nil, &p); code != http.StatusConflict || p.Code != handler.CodeSoldOut {
		t.Errorf("token for a sold-out item: %d %+v, want 409 sold_out", code, p)
	}
	// The first buyer's replay after sell-out still gets the 202.
	if code, again := a.purchase(it.ID, u1, k1); code != http.StatusAccepted || again != first {
		t.Errorf("replay after sold out: %d %+v, want 202 %+v", code, again, first)
	}
	if code, p := a.purchase(999999, u3, k3); code != http.StatusNotFound || p.Code != handler.CodeNotFound {
		t.Errorf("unknown item: %d %+v, want 404", code, p)
	}

	var stats struct {
		Stock, Remaining, Reserved int64
		Shards                     []int64
	}
	if code, _ := a.call("GET", fmt.Sprintf("/api/v1/admin/items/%d/stats", it.ID), testAdmin, nil, nil, &stats); code != 200 ||
		stats.Stock != 2 || stats.Remaining != 0 || stats.Reserved != 2 || len(stats.Shards) != 2 {
		t.Errorf("stats: %d %+v, want stock 2 remaining 0 reserved 2 over 2 shards", code, stats)
	}
	if code, _ := a.call("GET", fmt.Sprintf("/api/v1/admin/items/%d/stats", it.ID), u1, nil, nil, nil); code != 401 {
		t.Errorf("stats as a user: %d, want 401", code)
	}

	// The order lands in MySQL; its buyer can read and pay it, nobody else can.
	a.waitRows(it.ID, 2, 20*time.Second)
	orderPath := "/api/v1/orders/" + first.OrderID
	var o answer
	if code, _ := a.call("GET", orderPath, u1, nil, nil, &o); code != 200 || o.OrderID != first.OrderID || o.Status != "pending" {
		t.Errorf("get order: %d %+v, want 200 pending", code, o)
	}
	if code, _ := a.call("GET", orderPath, u2, nil, nil, &o); code != 404 {
		t.Errorf("another user's order: %d, want 404", code)
	}
	if code, _ := a.call("POST", orderPath+"/pay", u2, nil, nil, &o); code != 404 {
		t.Errorf("pay another user's order: %d, want 404", code)
	}
	if code, _ := a.call("POST", orderPath+"/pay", u1, nil, nil, &o); code != 200 || o.Status != "paid" {
		t.Errorf("pay: %d %+v, want 200 paid", code, o)
	}
	if code, _ := a.call("POST", orderPath+"/pay", u1, nil, nil, &o); code != 409 || o.Code != handler.CodeAlreadyPaid {
		t.Errorf("pay twice: %d %+v, want 409 already_paid", code, o)
	}

	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _ := a.call("GET", path, "", nil, nil, nil); code != 200 {
			t.Errorf("GET %s: %d, want 200", path, code)
		}
	}
}

// TestBadInputChangesNothing sends malformed and out-of-range requests: each
// gets a 4xx problem and neither MySQL nor Redis changes.
func TestBadInputChangesNothing(t *testing.T) {
	a := startApp(t, nil)
	it := a.createItem(map[string]any{"name": "ok", "price_minor": 1000, "currency": "EUR", "stock": 5})
	u := userToken(t, 9)
	count := func() (items, orders int) {
		a.db.Get(&items, "SELECT COUNT(*) FROM items")
		a.db.Get(&orders, "SELECT COUNT(*) FROM orders")
		return
	}
	items0, orders0 := count()
	rdb, _ := testenv.Redis(t)
	// Every key but the outbox streams, whose consumer groups the relay
	// creates in the background.
	redisKeys := func() int {
		n := 0
		for _, k := range testenv.Keys(context.Background(), rdb, a.Prefix+":*") {
			// The loss watcher's markers (one per slot group, and the
			// {meta} keys'), the leader leases (taken per sweep pass) and
			// the relay's sets of active outboxes (emptied as the last one
			// drains) come and go on their own.
			if !strings.HasSuffix(k, ":outbox") && !strings.Contains(k, ":{meta}:") && !strings.Contains(k, ":lease:") &&
				!strings.HasSuffix(k, ":active") && !strings.HasSuffix(k, ":alive") {
				n++
			}
		}
		return n
	}
	keys0 := redisKeys()

	expiredJWT, _ := handler.SignUserToken([]byte(testSecret), 9, -time.Minute)
	tests := []struct {
		name, method, path, bearer string
		body                       any
		status                     int
		code                       string
	}{
		{"malformed json", "POST", "/api/v1/admin/items", testAdmin, `{"name":`, 400, handler.CodeInvalidRequest},
		{"unknown field", "POST", "/api/v1/admin/items", testAdmin, `{"name":"x","price_minor":1000,"currency":"EUR","stock":1,"colour":"red"}`, 400, handler.CodeInvalidRequest},
		{"negative stock", "POST", "/api/v1/admin/items", testAdmin, `{"name":"x","price_minor":1000,"currency":"EUR","stock":-1}`, 400, handler.CodeInvalidRequest},
		{"huge stock", "POST", "/api/v1/admin/items", testAdmin, `{"name":"x","price_minor":1000,"currency":"EUR","stock":10000000000}`, 400, handler.CodeInvalidRequest},
		{"missing stock", "POST", "/api/v1/admin/items", testAdmin, `{"name":"x"}`, 400, handler.CodeInvalidRequest},
		{"shards 0", "POST", "/api/v1/admin/items", testAdmin, `{"name":"x","price_minor":1000,"currency":"EUR","stock":1,"shards":0}`, 400, handler.CodeInvalidRequest},
		{"shards 1025", "POST", "/api/v1/admin/items", testAdmin, `{"name":"x","price_minor":1000,"currency":"EUR","stock":1,"shards":1025}`, 400, handler.CodeInvalidRequest},
		{"limit 0", "POST", "/api/v1/admin/items", testAdmin, `{"name":"x","price_minor":1000,"currency":"EUR","stock":1,"per_user_limit":0}`, 400, handler.CodeInvalidRequest},
		{"ends before start", "POST", "/api/v1/admin/items", testAdmin, `{"name":"x","price_minor":1000,"currency":"EUR","stock":1,"starts_at":"2030-01-02T00:00:00Z","ends_at":"2030-01-01T00:00:00Z"}`, 400, handler.CodeInvalidRequest},
		{"bad time", "POST", "/api/v1/admin/items", testAdmin, `{"name":"x","price_minor":1000,"currency":"EUR","stock":1,"starts_at":"tomorrow"}`, 400, handler.CodeInvalidRequest},
		{"zero time", "POST", "/api/v1/admin/items", testAdmin, `{"name":"x","price_minor":1000,"currency":"EUR","stock":1,"starts_at":"0001-01-01T00:00:00Z"}`, 400, handler.CodeInvalidRequest},
		{"year 999", "POST", "/api/v1/admin/items", testAdmin, `{"name":"x","price_minor":1000,"currency":"EUR","stock":1,"starts_at":"0999-01-01T00:00:00Z"}`, 400, handler.CodeInvalidRequest},
		{"no admin token", "POST", "/api/v1/admin/items", "", `{"name":"x","price_minor":1000,"currency":"EUR","stock":1}`, 401, handler.CodeUnauthorized},
		{"user as admin", "POST", "/api/v1/admin/items", u, `{"name":"x","price_minor":1000,"currency":"EUR","stock":1}`, 401, handler.CodeUnauthorized},
		{"unknown item", "GET", "/api/v1/items/424242", "", nil, 404, handler.CodeNotFound},
		{"non-numeric id", "GET", "/api/v1/items/abc", "", nil, 400, handler.CodeInvalidRequest},
		{"token for unknown item", "POST", "/api/v1/items/424242/tokens", u, nil, 404, handler.CodeNotFound},
		{"expired user token", "POST", fmt.Sprintf("/api/v1/items/%d/tokens", it.ID), expiredJWT, nil, 401, handler.CodeUnauthorized},
		{"purchase unknown item", "POST", "/api/v1/items/424242/purchase", u, nil, 404, handler.CodeNotFound},
		{"unknown purchase token", "POST", fmt.Sprintf("/api/v1/items/%d/purchase", it.ID), u, nil, 403, handler.CodeTokenInvalid},
		{"unknown order", "GET", "/api/v1/orders/123", u, nil, 404, handler.CodeNotFound},
		{"unknown route", "GET", "/nope", "", nil, 404, handler.CodeNotFound},
	}
	for _, tc := range tests {
		var p struct {
			Code   string `json:"code"`
			Status int    `json:"status"`
		}
		hdr := map[string]string{"Content-Type": "application/json"}
		if strings.HasSuffix(tc.path, "/purchase") {
			hdr["Idempotency-Key"] = "0123456789abcdef0123456789abcdef"
		}
		code, h := a.call(tc.method, tc.path, tc.bearer, tc.body, hdr, &p)
		if code != tc.status || p.Code != tc.code || p.Status != tc.status {
			t.Errorf("%s: got %d %+v, want %d %q", tc.name, code, p, tc.status, tc.code)
		}
		if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
			t.Errorf("%s: content type %q, want application/problem+json", tc.name, ct)
		}
	}
	if items, orders := count(); items != items0 || orders != orders0 {
		t.Errorf("bad input changed MySQL: items %d->%d, orders %d->%d", items0, items, orders0, orders)
	}
	if keys := redisKeys(); keys != keys0 {
		t.Errorf("bad input changed Redis: %d keys, want %d", keys, keys0)
	}
}

// race has buyers get their purchase tokens, then releases every purchase
// at once. It returns the accepted order ids by user.
func (a *testApp) race(itemID int64, buyers int, firstUser int64) map[int64]string {
	a.t.Helper()
	jwts := make([]string, buyers)
	keys := make([]string, buyers)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range buyers {
		jwts[i] = userToken(a.t, firstUser+int64(i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			keys[i] = a.purchaseToken(itemID, jwts[i])
		}()
	}
	wg.Wait()
	var mu sync.Mutex
	accepted := map[int64]string{}
	start := make(chan struct{})
	for i := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			code, p := a.purchaseRetried(itemID, jwts[i], keys[i])
			// A 503 (a slow Redis under a loaded test machine) and a 409
			// purchase_in_progress (a fall-through cut short by it, settled
			// after the claim timeout) are retried with the same key, as a
			// client would: the answer is idempotent.
			for try := 0; (code == http.StatusServiceUnavailable || p.Code == handler.CodePurchaseInProgress) && try < 100; try++ {
				time.Sleep(100 * time.Millisecond)
				code, p = a.purchaseRetried(itemID, jwts[i], keys[i])
			}
			switch {
			case code == http.StatusAccepted:
				mu.Lock()
				defer mu.Unlock()
				if _, dup := accepted[firstUser+int64(i)]; dup {
					a.t.Errorf("user %d accepted twice", firstUser+int64(i))
				}
				accepted[firstUser+int64(i)] = p.OrderID
			case code == http.StatusConflict && p.Code == handler.CodeSoldOut:
			default:
				a.t.Errorf("purchase: %d %+v, want 202 or 409 sold_out", code, p)
			}
		}()
	}
	close(start)
	wg.Wait()
	return accepted
}

// checkOrders asserts that MySQL holds exactly the accepted orders.
func (a *testApp) checkOrders(itemID int64, accepted map[int64]string, stock int64) {
	a.t.Helper()
	a.waitRows(itemID, len(accepted), 60*time.Second)
	var rows []struct {
		OrderID int64 `db:"order_id"`
		UserID  int64 `db:"user_id"`
	}
	if err := a.db.Select(&rows, "SELECT order_id, user_id FROM orders WHERE item_id = ?", itemID); err != nil {
		a.t.Fatal(err)
	}
	seen := map[int64]bool{}
	for _, r := range rows {
		if seen[r.UserID] {
			a.t.Errorf("user %d has two orders", r.UserID)
		}
		seen[r.UserID] = true
		if accepted[r.UserID] != strconv.FormatInt(r.OrderID, 10) {
			a.t.Errorf("order %d of user %d was not a 202 answer (accepted %q)", r.OrderID, r.UserID, accepted[r.UserID])
		}
	}
	var sold int64
	a.db.Get(&sold, "SELECT sold FROM items WHERE id = ?", itemID)
	if sold != int64(len(accepted)) || sold > stock {
		a.t.Errorf("items.sold %d, want %d (<= stock %d)", sold, len(accepted), stock)
	}
}

// TestSaleEndToEnd: 5,000 buyers race an item of stock 1,000; exactly 1,000
// orders reach MySQL, one per accepted buyer.
func TestSaleEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	a := startApp(t, nil)
	const stock, buyers = 1000, 5000
	it := a.createItem(map[string]any{"name": "flash", "price_minor": 1000, "currency": "EUR", "stock": stock, "shards": 8})
	accepted := a.race(it.ID, buyers, 100_000)
	if len(accepted) != stock {
		t.Fatalf("accepted %d, want exactly %d", len(accepted), stock)
	}
	a.checkOrders(it.ID, accepted, stock)
}

// TestKafkaDownPurchasesStillLand: Kafka unreachable during the sale, so
// purchases are accepted into the outbox; when it comes up, all land.
func TestKafkaDownPurchasesStillLand(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there yet: Kafka is down
	a := startApp(t, map[string]string{"SECKILL_KAFKA_BROKERS": fmt.Sprintf("127.0.0.1:%d", port)})
	const stock = 50
	it := a.createItem(map[string]any{"name": "kafka-down", "price_minor": 1000, "currency": "EUR", "stock": stock, "shards": 4})
	accepted := a.race(it.ID, 80, 500_000)
	if len(accepted) != stock {
		t.Fatalf("accepted %d with Kafka down, want %d", len(accepted), stock)
	}
	var n int
	a.db.Get(&n, "SELECT COUNT(*) FROM orders")
	if n != 0 {
		t.Fatalf("orders %d before Kafka is up, want 0", n)
	}
	// Accepted but not in MySQL: readable from the outbox, not payable yet.
	for u, id := range accepted {
		var o struct {
			Status   string `json:"status"`
			InOutbox bool   `json:"in_outbox"`
		}
		if code, _ := a.call("GET", "/api/v1/orders/"+id, userToken(t, u), nil, nil, &o); code != 200 || o.Status != "pending" || !o.InOutbox {
			t.Errorf("order in the outbox: %d %+v, want 200 pending in_outbox", code, o)
		}
		var p answer
		if code, h := a.call("POST", "/api/v1/orders/"+id+"/pay", userToken(t, u), nil, nil, &p); code != 409 || p.Code != handler.CodeOrderPending || h.Get("Retry-After") == "" {
			t.Errorf("pay before the order landed: %d %+v, want 409 order_pending with Retry-After", code, p)
		}
		break
	}
	// Kafka comes up on the address the app keeps trying.
	testenv.Kafka(t, kfake.Ports(port))
	a.checkOrders(it.ID, accepted, stock)
}

// TestDevMode runs `seckill dev` with nothing but the process itself and
// executes the curl commands it prints.
func TestDevMode(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	var out apptest.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	env := map[string]string{"SECKILL_HTTP_ADDR": "127.0.0.1:0", "SECKILL_LOG_LEVEL": "error"}
	go func() { done <- app.Run(ctx, []string{"dev"}, func(k string) string { return env[k] }, &out) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev stopped with: %v", err)
		}
	}()
	var script []string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && len(script) == 0 {
		time.Sleep(200 * time.Millisecond)
		text := out.String()
		if !strings.Contains(text, "metrics | grep") {
			continue
		}
		for _, line := range strings.Split(text, "\n") {
			l := strings.TrimSpace(line)
			if strings.HasPrefix(l, "export ") || strings.HasPrefix(l, "curl ") || strings.HasPrefix(l, "TOKEN=") || strings.HasPrefix(l, "ORDER=") || strings.HasPrefix(l, "for ") {
				script = append(script, l)
			}
		}
	}
	if len(script) < 8 {
		t.Fatalf("dev printed %d commands, want at least 8:\n%s", len(script), out.String())
	}
	// Run as pasted in one go: no pause for the order to reach MySQL, the
	// script's pay step has to wait for it by itself.
	var shell []string
	for _, l := range script {
		shell = append(shell, l, "echo")
	}
	got, err := exec.Command("bash", "-euo", "pipefail", "-c", strings.Join(shell, "\n")).CombinedOutput()
	if err != nil {
		t.Fatalf("commands failed: %v\n%s", err, got)
	}
	for _, want := range []string{`"remaining":100`, `"status":"pending"`, `"status":"paid"`, `"reserved":1`, `seckill_purchases_total{outcome="ok"} 1`} {
		if !strings.Contains(string(got), want) {
			t.Errorf("output lacks %s:\n%s", want, got)
		}
	}
	if strings.Contains(string(got), handler.CodeOrderPending) {
		t.Errorf("pay ended on %s, want it paid:\n%s", handler.CodeOrderPending, got)
	}
}

// TestAcceptedOrdersSurviveRestart: purchases accepted by an instance that
// stops before relaying anything (Kafka down) become orders once another
// instance runs on the same Redis and MySQL.
func TestAcceptedOrdersSurviveRestart(t *testing.T) {
	first := startApp(t, map[string]string{"SECKILL_KAFKA_BROKERS": "127.0.0.1:1"})
	const stock = 20
	it := first.createItem(map[string]any{"name": "restart", "price_minor": 1000, "currency": "EUR", "stock": stock, "shards": 4})
	accepted := first.race(it.ID, 30, 900_000)
	if len(accepted) != stock {
		t.Fatalf("accepted %d, want %d", len(accepted), stock)
	}
	first.Stop() // gone before any order reached Kafka
	var n int
	first.db.Get(&n, "SELECT COUNT(*) FROM orders")
	if n != 0 {
		t.Fatalf("orders %d before the restart, want 0", n)
	}
	second := startApp(t, map[string]string{"SECKILL_REDIS_PREFIX": first.Prefix, "SECKILL_MYSQL_DSN": first.DSN})
	second.checkOrders(it.ID, accepted, stock)
}

// TestRedisLostRebuildsAtStart: Redis restarts without its data while
// orders are in MySQL; the next instance rebuilds the stock from MySQL once
// Kafka holds nothing more, and the sale goes on without oversell.
func TestRedisLostRebuildsAtStart(t *testing.T) {
	brokers := strings.Join(testenv.Kafka(t), ",")
	first := startApp(t, map[string]string{"SECKILL_KAFKA_BROKERS": brokers})
	const stock = 20
	it := first.createItem(map[string]any{"name": "redis-lost", "price_minor": 1000, "currency": "EUR", "stock": stock, "shards": 4})
	accepted := first.race(it.ID, 12, 1_000_000)
	if len(accepted) != 12 {
		t.Fatalf("accepted %d, want 12", len(accepted))
	}
	first.waitRows(it.ID, 12, 20*time.Second)
	first.Stop()

	rdb, _ := testenv.Redis(t)
	ctx := context.Background()
	testenv.DeleteKeys(ctx, rdb, first.Prefix+":*") // Redis restarted without persistence
	second := startApp(t, map[string]string{"SECKILL_KAFKA_BROKERS": brokers,
		"SECKILL_REDIS_PREFIX": first.Prefix, "SECKILL_MYSQL_DSN": first.DSN})
	deadline := time.Now().Add(30 * time.Second)
	var got item
	for time.Now().Before(deadline) {
		if code, _ := second.call("GET", fmt.Sprintf("/api/v1/items/%d", it.ID), "", nil, nil, &got); code == 200 && got.Remaining == stock-12 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got.Remaining != stock-12 {
		t.Fatalf("remaining after rebuild %d, want %d", got.Remaining, stock-12)
	}
	// Earlier buyers still hold their slots: the limit of 1 holds.
	for u := range accepted {
		if code, p := second.purchase(it.ID, userToken(t, u), second.purchaseToken(it.ID, userToken(t, u))); code != 409 || p.Code != handler.CodePurchaseLimit {
			t.Errorf("earlier buyer %d again: %d %+v, want 409 purchase_limit", u, code, p)
		}
		break
	}
	more := second.race(it.ID, 15, 2_000_000)
	if len(more) != stock-12 {
		t.Fatalf("accepted %d after the rebuild, want %d", len(more), stock-12)
	}
	for u, id := range more {
		accepted[u] = id
	}
	second.checkOrders(it.ID, accepted, stock)
}

// TestRedisLostWithOrdersInFlight: Redis loses its data while accepted
// reservations are still in the outbox (Kafka is down, so none reached
// MySQL). The instance that accepted them puts them back before the
// rebuild counts: every 202 becomes exactly one order, no unit is sold
// twice, and each buyer's retried key still answers its 202 (it used to
// lose the orders and resell their units: more 202s than stock).
func TestRedisLostWithOrdersInFlight(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // Kafka down: reservations stay in the outbox
	a := startApp(t, map[string]string{"SECKILL_KAFKA_BROKERS": fmt.Sprintf("127.0.0.1:%d", port)})
	const stock = 10
	it := a.createItem(map[string]any{"name": "lost-in-flight", "price_minor": 1000, "currency": "EUR", "stock": stock, "shards": 2})
	type bought struct{ key, order string }
	accepted := map[int64]bought{}
	for u := int64(3_000_000); u < 3_000_000+stock; u++ {
		jwt := userToken(t, u)
		key := a.purchaseToken(it.ID, jwt)
		code, p := a.purchase(it.ID, jwt, key)
		if code != http.StatusAccepted {
			t.Fatalf("purchase %d: %d %+v", u, code, p)
		}
		accepted[u] = bought{key, p.OrderID}
	}
	rdb, _ := testenv.Redis(t)
	ctx := context.Background()
	testenv.DeleteKeys(ctx, rdb, a.Prefix+":*") // Redis lost everything, the app keeps running
	testenv.Kafka(t, kfake.Ports(port))
	want := map[int64]string{}
	for u, b := range accepted {
		want[u] = b.order
	}
	a.checkOrders(it.ID, want, stock)
	for u, b := range accepted {
		jwt := userToken(t, u)
		code, p := a.purchase(it.ID, jwt, b.key)
		for try := 0; code == http.StatusServiceUnavailable && try < 100; try++ {
			time.Sleep(100 * time.Millisecond) // rebuild still running: 503 until it is done
			code, p = a.purchase(it.ID, jwt, b.key)
		}
		if code != http.StatusAccepted || p.OrderID != b.order {
			t.Errorf("retry of user %d's key after the loss: %d %+v, want 202 with order %s", u, code, p, b.order)
		}
	}
	// Nothing left to sell: the units are the reinjected orders'. A new
	// buyer is told so by the token request (the instance's product page
	// count says sold out) or, holding a token, by the purchase.
	jwt := userToken(t, 3_100_000)
	soldOut := func() (int, answer) {
		var p answer
		code, _ := a.call("POST", fmt.Sprintf("/api/v1/items/%d/tokens", it.ID), jwt, nil, nil, &p)
		if code == http.StatusCreated {
			return a.purchase(it.ID, jwt, p.Token)
		}
		return code, p
	}
	code, p := soldOut()
	for try := 0; code == http.StatusServiceUnavailable && try < 100; try++ {
		time.Sleep(100 * time.Millisecond)
		code, p = soldOut()
	}
	if code != http.StatusConflict || p.Code != handler.CodeSoldOut {
		t.Errorf("a new buyer after the rebuild: %d %+v, want 409 sold_out", code, p)
	}
}
