package app_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"seckill/app"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadConfigDefaultsAndOverrides(t *testing.T) {
	c, err := app.LoadConfig(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	defaults := []struct{ name, got, want string }{
		{"http addr", c.HTTP.Addr, ":8080"},
		{"redis addr", c.Redis.Addr, "127.0.0.1:6379"},
		{"mysql dsn", c.MySQL.DSN, "root@tcp(127.0.0.1:3306)/seckill?parseTime=true"},
		{"kafka brokers", strings.Join(c.Kafka.Brokers, ","), "127.0.0.1:9092"},
		{"order ttl", c.Order.TTL.String(), "15m0s"},
	}
	for _, d := range defaults {
		if d.got != d.want {
			t.Errorf("default %s: got %q, want %q", d.name, d.got, d.want)
		}
	}
	c, err = app.LoadConfig(env(map[string]string{
		"SECKILL_HTTP_ADDR": ":9999", "SECKILL_KAFKA_BROKERS": "a:1,b:2", "SECKILL_ORDER_TTL": "90s",
		"SECKILL_LIMIT_USER_RATE": "2.5", "SECKILL_ADMIN_TOKEN": "adm", "SECKILL_JWT_SECRET": "0123456789abcdef",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Addr != ":9999" || len(c.Kafka.Brokers) != 2 || c.Order.TTL != 90*time.Second || c.Limiter.UserRate != 2.5 {
		t.Errorf("overrides not applied: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("valid config: got %v", err)
	}
	if s := c.String(); strings.Contains(s, "0123456789abcdef") || strings.Contains(s, "adm\n") {
		t.Errorf("secrets printed:\n%s", s)
	}
	if _, err := app.LoadConfig(env(map[string]string{"SECKILL_ORDER_TTL": "soon"})); err == nil {
		t.Error("bad duration: got nil error")
	}
}

func TestServeRefusesWithoutSecrets(t *testing.T) {
	for _, missing := range []string{"SECKILL_ADMIN_TOKEN", "SECKILL_JWT_SECRET"} {
		vars := map[string]string{"SECKILL_ADMIN_TOKEN": "adm", "SECKILL_JWT_SECRET": "0123456789abcdef"}
		delete(vars, missing)
		err := app.Run(context.Background(), []string{"serve"}, env(vars), io.Discard)
		if err == nil || !strings.Contains(err.Error(), missing) {
			t.Errorf("serve without %s: got %v, want an error naming it", missing, err)
		}
	}
}

func TestTokenCommand(t *testing.T) {
	var out strings.Builder
	secret := "0123456789abcdef"
	if err := app.Run(context.Background(), []string{"token", "--user", "42", "--ttl", "5m"}, env(map[string]string{"SECKILL_JWT_SECRET": secret}), &out); err != nil {
		t.Fatal(err)
	}
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(strings.TrimSpace(out.String()), &claims, func(*jwt.Token) (any, error) { return []byte(secret), nil },
		jwt.WithValidMethods([]string{"HS256"}))
	if err != nil || claims.Subject != "42" {
		t.Fatalf("token: sub %q, err %v; want sub 42", claims.Subject, err)
	}
	if d := time.Until(claims.ExpiresAt.Time); d <= 4*time.Minute || d > 5*time.Minute {
		t.Errorf("token expires in %v, want about 5m", d)
	}
	for _, args := range [][]string{{"token"}, {"token", "--user", "-1"}, {"token", "--user", "x"}, {"bogus"}} {
		if err := app.Run(context.Background(), args, env(map[string]string{"SECKILL_JWT_SECRET": secret}), io.Discard); err == nil {
			t.Errorf("%v: got nil error", args)
		}
	}
}
