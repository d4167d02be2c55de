package app_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"seckill/app"
	"seckill/app/apptest"
)

// TestMetricsOnPrivateListener: with metrics.addr set, /metrics is served
// on that listener only (the API port answers 404 problem+json), and the
// server's shutdown closes that listener too.
func TestMetricsOnPrivateListener(t *testing.T) {
	a := apptest.Start(t, map[string]string{"SECKILL_METRICS_ADDR": "127.0.0.1:0"})
	get := func(url string) (int, string, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
	}
	if code, ct, body := get(a.Base + "/metrics"); code != http.StatusNotFound || ct != "application/problem+json" {
		t.Errorf("API port /metrics: got %d %s %.200s, want 404 problem+json", code, ct, body)
	}
	addr := a.Server.MetricsAddr
	if addr == "" || addr == a.Server.Addr {
		t.Fatalf("metrics listener: got %q (API on %q), want an address of its own", addr, a.Server.Addr)
	}
	code, _, body := get("http://" + addr + "/metrics")
	if code != http.StatusOK || !strings.Contains(body, "seckill_purchases_total") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("metrics listener /metrics: got %d %.200s, want 200 with the app's series", code, body)
	}
	// Only /metrics there: the API is not a second time on it.
	if code, _, _ := get("http://" + addr + "/healthz"); code != http.StatusNotFound {
		t.Errorf("metrics listener /healthz: got %d, want 404", code)
	}
	a.Stop()
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("metrics listener %s still accepts connections after Stop", addr)
	}
}

// TestMetricsAddrValidated: metrics.addr is host:port and not http.addr.
func TestMetricsAddrValidated(t *testing.T) {
	for _, addr := range []string{"nonsense", ":8080"} {
		cfg, err := app.LoadConfig(func(k string) string {
			return map[string]string{"SECKILL_METRICS_ADDR": addr, "SECKILL_HTTP_ADDR": ":8080",
				"SECKILL_ADMIN_TOKEN": "a", "SECKILL_JWT_SECRET": "0123456789abcdef", "SECKILL_PURCHASE_KEY": "purchase-key-0123456"}[k]
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "SECKILL_METRICS_ADDR") {
			t.Errorf("metrics.addr %q: got %v, want an error naming SECKILL_METRICS_ADDR", addr, err)
		}
	}
}
