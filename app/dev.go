package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"seckill/handler"
)

// devAddr is where dev listens unless SECKILL_HTTP_ADDR says otherwise:
// loopback only, as it runs with made-up secrets and a demo item.
const devAddr = "127.0.0.1:8080"

// dev runs the whole system in one process with embedded Redis, Kafka and
// MySQL (unless SECKILL_* points elsewhere), creates a demo item and prints
// what a newcomer needs to try it.
func dev(ctx context.Context, cfg Config, getenv func(string) string, stdout io.Writer) error {
	if getenv("SECKILL_HTTP_ADDR") == "" {
		cfg.HTTP.Addr = devAddr
	}
	if getenv("SECKILL_REDIS_ADDR") == "" {
		cfg.Redis.Addr = Embedded
		cfg.Redis.Mode = RedisSingle // the embedded server is no cluster
	}
	if getenv("SECKILL_MYSQL_DSN") == "" {
		cfg.MySQL.DSN = Embedded
	}
	if getenv("SECKILL_KAFKA_BROKERS") == "" {
		cfg.Kafka.Brokers = []string{Embedded}
	}
	if cfg.Auth.AdminToken == "" {
		cfg.Auth.AdminToken = "dev-admin-" + randHex(8)
	}
	if cfg.Auth.JWTSecret == "" {
		cfg.Auth.JWTSecret = "dev-secret-" + randHex(16)
	}
	if cfg.Auth.PurchaseKey == "" {
		cfg.Auth.PurchaseKey = "dev-purchase-" + randHex(16)
	}
	if getenv("SECKILL_KAFKA_PARTITIONS") == "" {
		cfg.Kafka.Partitions = 2
	}
	cfg.Kafka.SessionTimeout = 2 * time.Second
	if getenv("SECKILL_PAYMENTS_DEMO_PAY") == "" {
		cfg.Payments.DemoPay = true // the pay button of the walk-through below
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	return serve(ctx, cfg, stdout, func(s *Server) {
		if err := devWelcome(ctx, s, cfg, stdout); err != nil {
			fmt.Fprintln(stdout, "dev: creating the demo item failed:", err)
		}
	})
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// devBase is the URL to reach a server listening on addr, and a note when
// that is not the listen address itself: one on all interfaces is reached
// through loopback.
func devBase(addr string) (base, note string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr, ""
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return "http://" + net.JoinHostPort("127.0.0.1", port), " (listening on all interfaces, " + addr + ")"
	}
	return "http://" + net.JoinHostPort(host, port), ""
}

func devWelcome(ctx context.Context, s *Server, cfg Config, w io.Writer) error {
	base, note := devBase(s.Addr)
	body, _ := json.Marshal(map[string]any{"name": "demo phone", "stock": 100, "shards": 8, "per_user_limit": 1,
		"price_minor": 19900, "currency": "EUR"})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/admin/items", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+cfg.Auth.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var item struct {
		ID int64 `json:"id"`
	}
	if resp.StatusCode != http.StatusCreated || json.NewDecoder(resp.Body).Decode(&item) != nil {
		return fmt.Errorf("create demo item: status %d", resp.StatusCode)
	}
	user, err := handler.SignUserToken([]byte(cfg.Auth.JWTSecret), 1001, 24*time.Hour)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, `
seckill dev is running on %[1]s%[6]s (embedded Redis, Kafka and MySQL unless SECKILL_* says otherwise)

  admin token:  %[2]s
  user token:   %[3]s   (user 1001; more: SECKILL_JWT_SECRET=%[4]s seckill token --user 1002)
  demo item:    %[5]d (stock 100, 8 shards)

Try it (paste in another shell; pay retries while the order is still on
its way to MySQL, answered 409 order_pending):

  export ADMIN=%[2]s USER_TOKEN=%[3]s
  curl -s %[1]s/api/v1/items/%[5]d
  TOKEN=$(curl -s -X POST -H "Authorization: Bearer $USER_TOKEN" %[1]s/api/v1/items/%[5]d/tokens | sed 's/.*"token":"\([^"]*\)".*/\1/')
  ORDER=$(curl -s -X POST -H "Authorization: Bearer $USER_TOKEN" -H "Idempotency-Key: $TOKEN" %[1]s/api/v1/items/%[5]d/purchase | sed 's/.*"order_id":"\([^"]*\)".*/\1/')
  curl -s -H "Authorization: Bearer $USER_TOKEN" %[1]s/api/v1/orders/$ORDER
  for try in $(seq 50); do PAY=$(curl -s -X POST -H "Authorization: Bearer $USER_TOKEN" %[1]s/api/v1/orders/$ORDER/pay); case $PAY in *'"order_pending"'*) sleep 0.2;; *) break;; esac; done; echo "$PAY"
  curl -s -H "Authorization: Bearer $ADMIN" %[1]s/api/v1/admin/items/%[5]d/stats
  curl -s %[1]s/metrics | grep seckill_purchases_total

`, base, cfg.Auth.AdminToken, user, cfg.Auth.JWTSecret, item.ID, note)
	return nil
}
