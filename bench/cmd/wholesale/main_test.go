package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"seckill/app/apptest"
)

// TestWholeSaleAgainstApp runs a small sale against the real app through
// a proxy that answers every purchase token's first attempt 503 with
// Retry-After: 1 (a dependency failure, as the app answers it): every
// buyer must still end with a final answer, its retry sent with the same
// token no sooner than Retry-After; exactly the stock is sold, every
// winner's order is in MySQL and paid, and the summary adds up.
func TestWholeSaleAgainstApp(t *testing.T) {
	const units, buyers = 5, 200
	a := apptest.Start(t, nil)
	target, err := url.Parse(a.Base)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	refused := map[string]time.Time{} // token -> when its first attempt was refused
	var gaps []time.Duration          // refusal -> the retry with the same token
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if key := r.Header.Get("Idempotency-Key"); strings.HasSuffix(r.URL.Path, "/purchase") {
			mu.Lock()
			at, seen := refused[key]
			if !seen {
				refused[key] = time.Now()
			} else if !at.IsZero() {
				gaps = append(gaps, time.Since(at))
				refused[key] = time.Time{}
			}
			mu.Unlock()
			if !seen {
				w.Header().Set("Retry-After", "1")
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusServiceUnavailable)
				w.Write([]byte(`{"type":"about:blank","title":"Service Unavailable","status":503,"code":"unavailable"}`))
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	defer front.Close()
	itemID := a.CreateItem(t, `{"name":"whole sale test","price_minor":1000,"currency":"EUR","stock":`+strconv.Itoa(units)+`,"shards":2,"per_user_limit":1}`)

	out := filepath.Join(t.TempDir(), "sale.json")
	args := []string{"-base", front.URL, "-item", strconv.FormatInt(itemID, 10), "-buyers", strconv.Itoa(buyers),
		"-burst", "100ms", "-conns", "16", "-poll", "20ms", "-deadline", "2m", "-json", out}
	s, text := runSale(t, args, out, apptest.JWTSecret)
	if s.Won != units || s.Paid != units || s.DistinctOrders != units {
		t.Errorf("won, paid, distinct orders: got %d, %d, %d; want %d each\n%s", s.Won, s.Paid, s.DistinctOrders, units, text)
	}
	if s.Failed != 0 || s.PayFailed != 0 || s.Outcomes["sold_out"] != buyers-units {
		t.Errorf("failed %d, payments failed %d, sold out %d; want 0, 0, %d\n%s", s.Failed, s.PayFailed,
			s.Outcomes["sold_out"], buyers-units, text)
	}
	mu.Lock()
	if len(gaps) == 0 || len(gaps) != len(refused) || int64(len(gaps)) != s.Status5xx {
		t.Errorf("purchases refused %d, retried %d, 5xx counted %d: want every refused token retried, and counted", len(refused), len(gaps), s.Status5xx)
	}
	for _, g := range gaps {
		if g < time.Second {
			t.Errorf("a purchase retried %v after a 503 with Retry-After: 1, want at least 1s", g)
		}
	}
	mu.Unlock()
	if s.AnswerMs.N != buyers || s.AnswerMs.P50 > s.AnswerMs.P99 || s.AnswerMs.P99 > s.AnswerMs.Max {
		t.Errorf("answer times: got %+v for %d buyers", s.AnswerMs, buyers)
	}
	won := 0.0
	for d, r := range s.SuccessByDecile {
		won += r * float64(buyers/10)
		if r < 0 || r > 1 {
			t.Errorf("decile %d: success rate %v", d, r)
		}
	}
	if int(won+0.5) != units {
		t.Errorf("deciles add up to %v winners, want %d", won, units)
	}
	var rows, paid int
	if err := a.DB.Get(&rows, "SELECT COUNT(*) FROM orders WHERE item_id = ?", itemID); err != nil {
		t.Fatal(err)
	}
	if err := a.DB.Get(&paid, "SELECT COUNT(*) FROM orders WHERE item_id = ? AND status = 'paid'", itemID); err != nil {
		t.Fatal(err)
	}
	if rows != units || paid != units {
		t.Errorf("MySQL rows, paid rows: got %d, %d; want %d, %d", rows, paid, units, units)
	}
}

// TestFloorAgainstHello: -floor sends the same crowd to a hello server
// (as bench/ceiling answers): every buyer asks twice (its page, then its token request with
// its Authorization), hears 200 both times and is done.
func TestFloorAgainstHello(t *testing.T) {
	const buyers = 300
	var mu sync.Mutex
	withAuth, without := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			withAuth++
		} else {
			without++
		}
		mu.Unlock()
		if r.Method != http.MethodGet || r.URL.Path != "/hello" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"message":"hello"}`))
	}))
	defer srv.Close()
	out := filepath.Join(t.TempDir(), "floor.json")
	args := []string{"-floor", "-base", srv.URL, "-buyers", strconv.Itoa(buyers), "-burst", "50ms", "-conns", "8", "-json", out}
	s, text := runSale(t, args, out, "floor-secret-0123456789")
	if s.Failed != 0 || s.Won != 0 || s.RequestsPerBuyer != 2 {
		t.Errorf("failed %d, won %d, requests per buyer %v; want 0, 0, 2\n%s", s.Failed, s.Won, s.RequestsPerBuyer, text)
	}
	mu.Lock()
	defer mu.Unlock()
	if withAuth != buyers || without != buyers {
		t.Errorf("hellos with Authorization %d, without %d; want %d each", withAuth, without, buyers)
	}
}

// runSale runs the command with args and the user secret, and returns the
// summary it wrote to out and what it printed.
func runSale(t *testing.T, args []string, out, secret string) (summary, *bytes.Buffer) {
	t.Helper()
	getenv := func(k string) string { return map[string]string{"SECKILL_JWT_SECRET": secret}[k] }
	var text bytes.Buffer
	if err := run(context.Background(), args, getenv, &text); err != nil {
		t.Fatalf("run: %v", err)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var s summary
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	return s, &text
}
