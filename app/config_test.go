package app_test

import (
	"context"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"seckill/app"
	"seckill/order/token"
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
		"SECKILL_LIMIT_USER_RATE": "2.5", "SECKILL_ADMIN_TOKEN": "adm", "SECKILL_JWT_SECRET": "0123456789abcdef", "SECKILL_PURCHASE_KEY": "purchase-key-0123456",
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
	for _, missing := range []string{"SECKILL_ADMIN_TOKEN", "SECKILL_JWT_SECRET", "SECKILL_PURCHASE_KEY"} {
		vars := map[string]string{"SECKILL_ADMIN_TOKEN": "adm", "SECKILL_JWT_SECRET": "0123456789abcdef", "SECKILL_PURCHASE_KEY": "purchase-key-0123456"}
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

// validConfig is the built-in configuration with the secrets serve needs.
func validConfig(t *testing.T) app.Config {
	t.Helper()
	c, err := app.LoadConfig(env(map[string]string{"SECKILL_ADMIN_TOKEN": "adm", "SECKILL_JWT_SECRET": "0123456789abcdef", "SECKILL_PURCHASE_KEY": "purchase-key-0123456"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("built-in config with secrets: %v", err)
	}
	return c
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "seckill.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigFileLayersOverDefaults: a SECKILL_CONFIG file changes only what
// it names; the environment still wins over it.
func TestConfigFileLayersOverDefaults(t *testing.T) {
	def, err := app.LoadConfig(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, "http: {addr: \"127.0.0.1:9\"}\nkafka: {brokers: [\"k1:9092\", \"k2:9092\"]}\n")
	got, err := app.LoadConfig(env(map[string]string{"SECKILL_CONFIG": path}))
	if err != nil {
		t.Fatal(err)
	}
	want := def
	want.HTTP.Addr = "127.0.0.1:9"
	want.Kafka.Brokers = []string{"k1:9092", "k2:9092"} // a list is replaced, not merged
	if !reflect.DeepEqual(got, want) {
		t.Errorf("file over defaults:\ngot  %s\nwant %s", got, want)
	}
	got, err = app.LoadConfig(env(map[string]string{"SECKILL_CONFIG": path, "SECKILL_HTTP_ADDR": ":7"}))
	if err != nil || got.HTTP.Addr != ":7" {
		t.Errorf("env over file: addr %q, err %v; want :7", got.HTTP.Addr, err)
	}
	if got, err := app.LoadConfig(env(map[string]string{"SECKILL_CONFIG": writeFile(t, "")})); err != nil || !reflect.DeepEqual(got, def) {
		t.Errorf("empty file: err %v, config changed: %v", err, !reflect.DeepEqual(got, def))
	}
}

// TestConfigRejectsUnknownKeys: a misspelt key is an error, not a setting
// silently left at its default.
func TestConfigRejectsUnknownKeys(t *testing.T) {
	for _, text := range []string{"sweeper: {intervall: 1s}\n", "htp: {addr: \":1\"}\n"} {
		if _, err := app.LoadConfig(env(map[string]string{"SECKILL_CONFIG": writeFile(t, text)})); err == nil {
			t.Errorf("%q: got nil error, want the unknown key refused", text)
		}
	}
	if _, err := app.LoadConfig(env(map[string]string{"SECKILL_CONFIG": "/nonexistent/seckill.yaml"})); err == nil {
		t.Error("missing file: got nil error")
	}
}

// TestConfigEnvNumbers: integers must be integers in range, rates numbers.
func TestConfigEnvNumbers(t *testing.T) {
	for k, v := range map[string]string{
		"SECKILL_KAFKA_PARTITIONS":    "2.5",
		"SECKILL_LIMIT_MAX_IN_FLIGHT": "lots",
		"SECKILL_LIMIT_USER_RATE":     "fast",
	} {
		if _, err := app.LoadConfig(env(map[string]string{k: v})); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: got %v, want an error naming %s", k, v, err, k)
		}
	}
	if _, err := app.LoadConfig(env(map[string]string{"SECKILL_KAFKA_PARTITIONS": "99999999999"})); err == nil {
		t.Error("SECKILL_KAFKA_PARTITIONS past int32: got nil error")
	}
}

// TestConfigValidateRejectsBadValues: settings that would panic (a ticker of
// 0) or quietly misbehave (a batch of 0, no timeout) stop the start.
func TestConfigValidateRejectsBadValues(t *testing.T) {
	tests := []struct {
		name  string // the setting the error must name
		spoil func(c *app.Config)
	}{
		{"http.addr", func(c *app.Config) { c.HTTP.Addr = "" }},
		{"http.read_timeout", func(c *app.Config) { c.HTTP.ReadTimeout = 0 }},
		{"http.write_timeout", func(c *app.Config) { c.HTTP.WriteTimeout = -time.Second }},
		{"http.idle_timeout", func(c *app.Config) { c.HTTP.IdleTimeout = 0 }},
		{"http.shutdown_timeout", func(c *app.Config) { c.HTTP.ShutdownTimeout = 0 }},
		{"redis.addr", func(c *app.Config) { c.Redis.Addr = "" }},
		{"redis.addr", func(c *app.Config) { c.Redis.Addr = "a:1,b:2" }}, // a list needs cluster mode
		{"redis.prefix", func(c *app.Config) { c.Redis.Prefix = "" }},
		{"redis.pool_size", func(c *app.Config) { c.Redis.PoolSize = 0 }},
		{"redis.timeout", func(c *app.Config) { c.Redis.Timeout = 0 }},
		{"mysql.dsn", func(c *app.Config) { c.MySQL.DSN = "" }},
		{"mysql.dsn", func(c *app.Config) { c.MySQL.DSN = "not a dsn" }},
		{"mysql.max_open_conns", func(c *app.Config) { c.MySQL.MaxOpenConns = -1 }},
		{"kafka.brokers", func(c *app.Config) { c.Kafka.Brokers = nil }},
		{"kafka.brokers", func(c *app.Config) { c.Kafka.Brokers = []string{"a:1", ""} }},
		{"kafka.topic", func(c *app.Config) { c.Kafka.Topic = "" }},
		{"kafka.partitions", func(c *app.Config) { c.Kafka.Partitions = 0 }},
		{"kafka.group", func(c *app.Config) { c.Kafka.Group = "" }},
		{"kafka.session_timeout", func(c *app.Config) { c.Kafka.SessionTimeout = 0 }},
		{"order.ttl", func(c *app.Config) { c.Order.TTL = 0 }},
		{"order.token_ttl", func(c *app.Config) { c.Order.TokenTTL = -time.Minute }},
		{"limiter.global_rate", func(c *app.Config) { c.Limiter.GlobalRate = -1 }},
		{"limiter.user_rate", func(c *app.Config) { c.Limiter.UserRate = math.NaN() }},
		{"limiter.global_burst", func(c *app.Config) { c.Limiter.GlobalBurst = -1 }},
		{"limiter.user_burst", func(c *app.Config) { c.Limiter.UserBurst = -1 }},
		{"limiter.max_in_flight", func(c *app.Config) { c.Limiter.MaxInFlight = -1 }},
		{"limiter.acquire_wait", func(c *app.Config) { c.Limiter.AcquireWait = -time.Millisecond }},
		{"relay.batch_size", func(c *app.Config) { c.Relay.BatchSize = 0 }},
		{"relay.claim_idle", func(c *app.Config) { c.Relay.ClaimIdle = 0 }},
		{"consumer.batch_size", func(c *app.Config) { c.Consumer.BatchSize = 0 }},
		{"consumer.batch_wait", func(c *app.Config) { c.Consumer.BatchWait = 0 }},
		{"sweeper.interval", func(c *app.Config) { c.Sweeper.Interval = 0 }},
		{"sweeper.batch", func(c *app.Config) { c.Sweeper.Batch = 0 }},
		{"sweeper.lease", func(c *app.Config) { c.Sweeper.Lease = -time.Second }},
		{"reconciler.interval", func(c *app.Config) { c.Reconciler.Interval = 0 }},
		{"mysql.dial_timeout", func(c *app.Config) { c.MySQL.DialTimeout = 0 }},
		{"mysql.timeout", func(c *app.Config) { c.MySQL.Timeout = 0 }},
		{"breaker.failures", func(c *app.Config) { c.Breaker.Failures = 0 }},
		{"breaker.open_for", func(c *app.Config) { c.Breaker.OpenFor = 0 }},
		{"breaker.probes", func(c *app.Config) { c.Breaker.Probes = 0 }},
		{"log.level", func(c *app.Config) { c.Log.Level = "loud" }},
	}
	for _, tc := range tests {
		c := validConfig(t)
		tc.spoil(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("broken %s: got %v, want an error naming it", tc.name, err)
		}
	}
	// Zero turns a limiter off, as the limiter documents: allowed.
	c := validConfig(t)
	c.Limiter.GlobalRate, c.Limiter.UserRate, c.Limiter.MaxInFlight, c.Limiter.AcquireWait = 0, 0, 0, 0
	if err := c.Validate(); err != nil {
		t.Errorf("limits off: got %v, want nil", err)
	}
}

// TestConfigStringMasksDSNPassword: the password goes even when it holds
// an '@' or a ':'.
func TestConfigStringMasksDSNPassword(t *testing.T) {
	c := validConfig(t)
	c.MySQL.DSN = "app:p@ss:w0rd@tcp(db:3306)/seckill?parseTime=true"
	s := c.String()
	if strings.Contains(s, "p@ss") || strings.Contains(s, "w0rd") || !strings.Contains(s, "app:***@tcp(db:3306)/seckill") {
		t.Errorf("String() shows:\n%s\nwant the DSN as app:***@tcp(db:3306)/seckill...", s)
	}
}

// TestConfigRedisAndClaimSettings: redis.mode, redis.wait_replicas,
// redis.wait_timeout and order.claim_timeout, from defaults and env.
func TestConfigRedisAndClaimSettings(t *testing.T) {
	c := validConfig(t)
	if c.Redis.Mode != app.RedisSingle || c.Redis.WaitReplicas != 0 || c.Redis.WaitTimeout != 100*time.Millisecond ||
		c.Order.ClaimTimeout != 30*time.Second || !reflect.DeepEqual(c.RedisAddrs(), []string{"127.0.0.1:6379"}) {
		t.Errorf("defaults: mode %q wait %d/%v claim %v addrs %q, want single 0/100ms 30s [127.0.0.1:6379]",
			c.Redis.Mode, c.Redis.WaitReplicas, c.Redis.WaitTimeout, c.Order.ClaimTimeout, c.RedisAddrs())
	}
	c, err := app.LoadConfig(env(map[string]string{
		"SECKILL_ADMIN_TOKEN": "adm", "SECKILL_JWT_SECRET": "0123456789abcdef", "SECKILL_PURCHASE_KEY": "purchase-key-0123456",
		"SECKILL_REDIS_MODE": "cluster", "SECKILL_REDIS_ADDR": "n1:7000, n2:7001,n3:7002",
		"SECKILL_CLAIM_TIMEOUT": "5s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("cluster config: got %v, want valid", err)
	}
	if got, want := c.RedisAddrs(), []string{"n1:7000", "n2:7001", "n3:7002"}; !reflect.DeepEqual(got, want) {
		t.Errorf("cluster seeds: got %q, want %q", got, want)
	}
	for _, want := range []string{"mode: cluster", "claim_timeout: 5s"} {
		if !strings.Contains(c.String(), want) {
			t.Errorf("String() lacks %q:\n%s", want, c)
		}
	}
	// Replicas are awaited in single mode only (WAIT goes to the master
	// that took the reservation, which a cluster pipeline cannot name).
	c, err = app.LoadConfig(env(map[string]string{
		"SECKILL_ADMIN_TOKEN": "adm", "SECKILL_JWT_SECRET": "0123456789abcdef", "SECKILL_PURCHASE_KEY": "purchase-key-0123456",
		"SECKILL_REDIS_WAIT_REPLICAS": "1", "SECKILL_REDIS_WAIT_TIMEOUT": "50ms", "SECKILL_CLAIM_TIMEOUT": "5s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("single mode awaiting a replica: got %v, want valid", err)
	}
	if c.Redis.WaitReplicas != 1 || c.Redis.WaitTimeout != 50*time.Millisecond || c.Order.ClaimTimeout != 5*time.Second {
		t.Errorf("env: wait %d/%v claim %v, want 1/50ms 5s", c.Redis.WaitReplicas, c.Redis.WaitTimeout, c.Order.ClaimTimeout)
	}
	for _, want := range []string{"mode: single", "wait_replicas: 1", "wait_timeout: 50ms", "claim_timeout: 5s"} {
		if !strings.Contains(c.String(), want) {
			t.Errorf("String() lacks %q:\n%s", want, c)
		}
	}
	embedded := validConfig(t)
	embedded.Redis.Addr = app.Embedded
	if err := embedded.Validate(); err != nil {
		t.Errorf("single mode, embedded: got %v, want valid", err)
	}

	if _, err := app.LoadConfig(env(map[string]string{"SECKILL_REDIS_WAIT_REPLICAS": "one"})); err == nil {
		t.Error("SECKILL_REDIS_WAIT_REPLICAS=one: got nil error")
	}
	for _, tc := range []struct {
		name  string
		spoil func(c *app.Config)
	}{
		{"redis.mode", func(c *app.Config) { c.Redis.Mode = "sentinel" }},
		{"redis.mode", func(c *app.Config) { c.Redis.Mode = "" }},
		{"redis.wait_replicas", func(c *app.Config) { c.Redis.WaitReplicas = -1 }},
		{"redis.wait_timeout", func(c *app.Config) { c.Redis.WaitTimeout = 0 }},
		{"redis.wait_timeout", func(c *app.Config) { c.Redis.WaitReplicas, c.Redis.WaitTimeout = 1, c.Redis.Timeout }}, // WAIT would outlast the call
		{"order.claim_timeout", func(c *app.Config) { c.Order.ClaimTimeout = 0 }},
		{"redis.start_wait", func(c *app.Config) { c.Redis.StartWait = 0 }},
		{"redis.policy_check", func(c *app.Config) { c.Redis.PolicyCheck = 0 }},
		{"mysql.start_wait", func(c *app.Config) { c.MySQL.StartWait = 0 }},
		{"redis.addr", func(c *app.Config) { c.Redis.Mode, c.Redis.Addr = app.RedisCluster, app.Embedded }},
		{"redis.addr", func(c *app.Config) { c.Redis.Mode, c.Redis.Addr = app.RedisCluster, "n1:7000,,n2:7000" }},
		{"redis.addr", func(c *app.Config) { c.Redis.Mode, c.Redis.Addr = app.RedisCluster, "" }},
		{"redis.wait_replicas", func(c *app.Config) {
			c.Redis.Mode, c.Redis.Addr, c.Redis.WaitReplicas, c.Redis.WaitTimeout = app.RedisCluster, "n1:7000,n2:7000", 1, 50*time.Millisecond
		}},
	} {
		c := validConfig(t)
		tc.spoil(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("broken %s: got %v, want an error naming it", tc.name, err)
		}
	}
}

// TestConfigDLQTopicRetired: kafka.dlq_topic is no longer used (dead letters
// are rows of dead_letters): the built-in config does not set it, a file
// that still does loads and validates, and the key is reported deprecated.
func TestConfigDLQTopicRetired(t *testing.T) {
	def := validConfig(t)
	if def.Kafka.DLQTopic != "" {
		t.Errorf("built-in kafka.dlq_topic: got %q, want none", def.Kafka.DLQTopic)
	}
	if got := def.Deprecated(); len(got) != 0 {
		t.Errorf("built-in config deprecations: got %q, want none", got)
	}
	c, err := app.LoadConfig(env(map[string]string{
		"SECKILL_CONFIG":      writeFile(t, "kafka: {dlq_topic: \"seckill.orders\"}\n"),
		"SECKILL_ADMIN_TOKEN": "adm", "SECKILL_JWT_SECRET": "0123456789abcdef", "SECKILL_PURCHASE_KEY": "purchase-key-0123456",
	}))
	if err != nil {
		t.Fatalf("a file with kafka.dlq_topic: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("a file with kafka.dlq_topic: got %v, want valid", err)
	}
	if got := c.Deprecated(); len(got) != 1 || !strings.Contains(got[0], "kafka.dlq_topic") {
		t.Errorf("deprecations: got %q, want one naming kafka.dlq_topic", got)
	}
}

// TestPurchaseKeys: the signing key and the old keys of a rotation are
// read from the environment, old keys verify but do not sign, a bad old
// key is named, and String masks every secret.
func TestPurchaseKeys(t *testing.T) {
	vars := map[string]string{"SECKILL_ADMIN_TOKEN": "adm", "SECKILL_JWT_SECRET": "0123456789abcdef",
		"SECKILL_PURCHASE_KEY": "new-purchase-key-0123", "SECKILL_PURCHASE_KEY_ID": "2",
		"SECKILL_PURCHASE_OLD_KEYS": "1:old-purchase-key-0123"}
	c, err := app.LoadConfig(env(vars))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid keys: %v", err)
	}
	if s := c.String(); strings.Contains(s, "purchase-key-0123") {
		t.Errorf("purchase keys printed:\n%s", s)
	}
	keys, err := c.PurchaseKeys()
	if err != nil {
		t.Fatal(err)
	}
	old, err := token.NewKeys(token.Key{ID: 1, Secret: []byte("old-purchase-key-0123")})
	if err != nil {
		t.Fatal(err)
	}
	oldTok, _, _ := old.Issue(1, 2, time.Now().Add(time.Minute))
	if _, err := keys.Verify(oldTok); err != nil {
		t.Errorf("token of the old key: %v, want accepted", err)
	}
	newTok, claims, _ := keys.Issue(1, 2, time.Now().Add(time.Minute))
	if _, err := old.Verify(newTok); err == nil || claims.KeyID != 2 {
		t.Errorf("new token signed by key %d, verified by the old key alone: %v; want key 2, refused", claims.KeyID, err)
	}
	for _, bad := range []map[string]string{
		{"SECKILL_PURCHASE_OLD_KEYS": "old-purchase-key-0123"},
		{"SECKILL_PURCHASE_OLD_KEYS": "300:old-purchase-key-0123"},
		{"SECKILL_PURCHASE_OLD_KEYS": "2:same-id-as-the-current"},
		{"SECKILL_PURCHASE_KEY": "short"},
		{"SECKILL_PURCHASE_KEY_ID": "256"},
	} {
		v := maps.Clone(vars)
		maps.Copy(v, bad)
		c, err := app.LoadConfig(env(v))
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), "SECKILL_PURCHASE_") {
			t.Errorf("%v: got %v, want an error naming the variable", bad, err)
		}
	}
}
