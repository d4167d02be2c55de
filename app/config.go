package app

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"gopkg.in/yaml.v3"

	"seckill/configs"
	"seckill/order/token"
	"seckill/stock"
)

// Embedded is the address that asks for an in-process stand-in server.
const Embedded = "embedded"

// Redis deployment modes (redis.mode).
const (
	// RedisSingle is one Redis server (or a primary with replicas) at redis.addr.
	RedisSingle = "single"
	// RedisCluster is a Redis Cluster; redis.addr lists seed nodes, comma separated.
	RedisCluster = "cluster"
)

// minJWTSecret is the shortest user-token secret accepted: an HS256 key
// much shorter than this can be brute-forced offline from one token.
const minJWTSecret = 16

// Config is the whole configuration, loaded once: the built-in
// configs/seckill.yaml, then the file SECKILL_CONFIG names layered over it,
// then SECKILL_* environment overrides.
type Config struct {
	HTTP struct {
		Addr            string        `yaml:"addr"`
		ReadTimeout     time.Duration `yaml:"read_timeout"`
		WriteTimeout    time.Duration `yaml:"write_timeout"`
		IdleTimeout     time.Duration `yaml:"idle_timeout"`
		ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	} `yaml:"http"`
	Metrics struct {
		// Addr, when set, is a listener of its own that alone serves
		// /metrics (one only Prometheus reaches); "" serves it on
		// http.addr next to the API.
		Addr string `yaml:"addr"`
	} `yaml:"metrics"`
	Redis struct {
		// Mode is RedisSingle or RedisCluster; RedisAddrs reads Addr by it.
		Mode     string        `yaml:"mode"`
		Addr     string        `yaml:"addr"`
		Prefix   string        `yaml:"prefix"`
		PoolSize int           `yaml:"pool_size"`
		Timeout  time.Duration `yaml:"timeout"` // one call's whole budget (newRedis)
		// WaitReplicas replicas must acknowledge a reservation (WAIT)
		// before the 202; 0 answers once the primary has it.
		WaitReplicas int           `yaml:"wait_replicas"`
		WaitTimeout  time.Duration `yaml:"wait_timeout"`
		// StartWait is how long a start waits for a Redis that is not up
		// yet or still loading its data before it gives up.
		StartWait time.Duration `yaml:"start_wait"`
		// PolicyCheck is how often the maxmemory-policy of every master is
		// checked: purchases stop while it is not noeviction.
		PolicyCheck time.Duration `yaml:"policy_check"`
	} `yaml:"redis"`
	MySQL struct {
		DSN          string `yaml:"dsn"`
		MaxOpenConns int    `yaml:"max_open_conns"`
		// StartWait is how long a start waits for a MySQL not reachable
		// yet before it gives up.
		StartWait time.Duration `yaml:"start_wait"`
		// DialTimeout and Timeout (read and write) are the driver's
		// timeout, readTimeout and writeTimeout unless the DSN sets them.
		DialTimeout time.Duration `yaml:"dial_timeout"`
		Timeout     time.Duration `yaml:"timeout"`
	} `yaml:"mysql"`
	Kafka struct {
		Brokers []string `yaml:"brokers"`
		Topic   string   `yaml:"topic"`
		// DLQTopic is deprecated and unused: dead letters are rows of
		// MySQL's dead_letters, where they make the buyer's order read
		// "refused". Still accepted in a file, with a warning (Deprecated).
		DLQTopic       string        `yaml:"dlq_topic,omitempty"`
		Partitions     int32         `yaml:"partitions"`
		Group          string        `yaml:"group"`
		SessionTimeout time.Duration `yaml:"session_timeout"`
	} `yaml:"kafka"`
	Auth struct {
		AdminToken string `yaml:"admin_token"`
		JWTSecret  string `yaml:"jwt_secret"`
		// PurchaseKey signs purchase tokens (HMAC-SHA256, package
		// order/token); every token names PurchaseKeyID.
		PurchaseKey   string `yaml:"purchase_key"`
		PurchaseKeyID int    `yaml:"purchase_key_id"`
		// PurchaseOldKeys are "id:secret" keys still accepted, not used to
		// sign: the keys a rotation retires (PurchaseKeys).
		PurchaseOldKeys []string `yaml:"purchase_old_keys"`
	} `yaml:"auth"`
	Item struct {
		// PageRefresh is how often an item's remaining count is read from
		// Redis for its product page, per instance (sale.Config).
		PageRefresh time.Duration `yaml:"page_refresh"`
	} `yaml:"item"`
	Order struct {
		TTL      time.Duration `yaml:"ttl"`
		TokenTTL time.Duration `yaml:"token_ttl"`
		// ClaimTimeout is how long a fall-through claim may stay open
		// before it is settled.
		ClaimTimeout time.Duration `yaml:"claim_timeout"`
	} `yaml:"order"`
	Limiter struct {
		GlobalRate  float64       `yaml:"global_rate"`
		GlobalBurst int           `yaml:"global_burst"`
		UserRate    float64       `yaml:"user_rate"`
		UserBurst   int           `yaml:"user_burst"`
		MaxInFlight int           `yaml:"max_in_flight"`
		AcquireWait time.Duration `yaml:"acquire_wait"`
	} `yaml:"limiter"`
	Relay struct {
		BatchSize int64         `yaml:"batch_size"`
		ClaimIdle time.Duration `yaml:"claim_idle"`
		Linger    time.Duration `yaml:"linger"`
	} `yaml:"relay"`
	Consumer struct {
		BatchSize int           `yaml:"batch_size"`
		BatchWait time.Duration `yaml:"batch_wait"`
	} `yaml:"consumer"`
	Sweeper struct {
		Interval time.Duration `yaml:"interval"`
		Batch    int           `yaml:"batch"`
		Lease    time.Duration `yaml:"lease"`
	} `yaml:"sweeper"`
	Reconciler struct {
		Interval time.Duration `yaml:"interval"`
	} `yaml:"reconciler"`
	// Breaker configures the circuit breakers of Redis, MySQL and the
	// Kafka producer (package limiter/breaker).
	Breaker struct {
		// Failures consecutive timeouts or connection errors open a breaker.
		Failures int `yaml:"failures"`
		// OpenFor is how long an open breaker fails calls at once.
		OpenFor time.Duration `yaml:"open_for"`
		// Probes calls go through a half-open breaker; all must succeed.
		Probes int `yaml:"probes"`
	} `yaml:"breaker"`
	Log struct {
		Level string `yaml:"level"`
	} `yaml:"log"`
	// Payments configures the payment provider's callback and the demo
	// pay route (handler.Payments).
	Payments struct {
		// CallbackSecret is the HMAC-SHA256 key shared with the provider;
		// "" turns the callback off (404).
		CallbackSecret string `yaml:"callback_secret"`
		// CallbackWindow is how far a callback's timestamp may lie from
		// now, either way.
		CallbackWindow time.Duration `yaml:"callback_window"`
		// DemoPay turns on the buyer's pay button (dev turns it on).
		DemoPay bool `yaml:"demo_pay"`
	} `yaml:"payments"`
}

// RedisAddrs is where Redis is: the one address of single mode, or the
// seed nodes of a cluster (redis.addr is then a comma-separated list).
func (c Config) RedisAddrs() []string {
	if c.Redis.Mode != RedisCluster {
		return []string{c.Redis.Addr}
	}
	return splitList(c.Redis.Addr)
}

// splitList splits a comma-separated list, trimming blanks around items.
// Empty items are kept so that Validate can name them.
func splitList(v string) []string {
	items := strings.Split(v, ",")
	for i := range items {
		items[i] = strings.TrimSpace(items[i])
	}
	return items
}

// override is one SECKILL_* variable and the yaml key it overrides.
type override struct {
	env string
	key string
	set func(c *Config, v string) error
}

func str(p func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = v; return nil }
}

func dur(p func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		*p(c) = d
		return err
	}
}

// integer parses a whole number that fits T: "2.5" or 1e10 for an int32 is
// an error, not a silently truncated setting.
func integer[T int | int32 | int64](p func(*Config) *T) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return err
		}
		if int64(T(n)) != n {
			return fmt.Errorf("%d is out of range", n)
		}
		*p(c) = T(n)
		return nil
	}
}

func float(p func(*Config) *float64) func(*Config, string) error {
	return func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		*p(c) = f
		return err
	}
}

func list(p func(*Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = splitList(v); return nil }
}

// overrides are every environment variable LoadConfig reads besides
// SECKILL_CONFIG, in the order of configs/seckill.yaml.
var overrides = []override{
	{"SECKILL_HTTP_ADDR", "http.addr", str(func(c *Config) *string { return &c.HTTP.Addr })},
	{"SECKILL_METRICS_ADDR", "metrics.addr", str(func(c *Config) *string { return &c.Metrics.Addr })},
	{"SECKILL_REDIS_MODE", "redis.mode", str(func(c *Config) *string { return &c.Redis.Mode })},
	{"SECKILL_REDIS_ADDR", "redis.addr", str(func(c *Config) *string { return &c.Redis.Addr })},
	{"SECKILL_REDIS_PREFIX", "redis.prefix", str(func(c *Config) *string { return &c.Redis.Prefix })},
	{"SECKILL_REDIS_TIMEOUT", "redis.timeout", dur(func(c *Config) *time.Duration { return &c.Redis.Timeout })},
	{"SECKILL_REDIS_WAIT_REPLICAS", "redis.wait_replicas", integer(func(c *Config) *int { return &c.Redis.WaitReplicas })},
	{"SECKILL_REDIS_WAIT_TIMEOUT", "redis.wait_timeout", dur(func(c *Config) *time.Duration { return &c.Redis.WaitTimeout })},
	{"SECKILL_MYSQL_DSN", "mysql.dsn", str(func(c *Config) *string { return &c.MySQL.DSN })},
	{"SECKILL_MYSQL_TIMEOUT", "mysql.timeout", dur(func(c *Config) *time.Duration { return &c.MySQL.Timeout })},
	{"SECKILL_KAFKA_BROKERS", "kafka.brokers", list(func(c *Config) *[]string { return &c.Kafka.Brokers })},
	{"SECKILL_KAFKA_PARTITIONS", "kafka.partitions", integer(func(c *Config) *int32 { return &c.Kafka.Partitions })},
	{"SECKILL_ADMIN_TOKEN", "auth.admin_token", str(func(c *Config) *string { return &c.Auth.AdminToken })},
	{"SECKILL_JWT_SECRET", "auth.jwt_secret", str(func(c *Config) *string { return &c.Auth.JWTSecret })},
	{"SECKILL_PURCHASE_KEY", "auth.purchase_key", str(func(c *Config) *string { return &c.Auth.PurchaseKey })},
	{"SECKILL_PURCHASE_KEY_ID", "auth.purchase_key_id", integer(func(c *Config) *int { return &c.Auth.PurchaseKeyID })},
	{"SECKILL_PURCHASE_OLD_KEYS", "auth.purchase_old_keys", list(func(c *Config) *[]string { return &c.Auth.PurchaseOldKeys })},
	{"SECKILL_ITEM_PAGE_REFRESH", "item.page_refresh", dur(func(c *Config) *time.Duration { return &c.Item.PageRefresh })},
	{"SECKILL_ORDER_TTL", "order.ttl", dur(func(c *Config) *time.Duration { return &c.Order.TTL })},
	{"SECKILL_TOKEN_TTL", "order.token_ttl", dur(func(c *Config) *time.Duration { return &c.Order.TokenTTL })},
	{"SECKILL_CLAIM_TIMEOUT", "order.claim_timeout", dur(func(c *Config) *time.Duration { return &c.Order.ClaimTimeout })},
	{"SECKILL_LIMIT_GLOBAL_RATE", "limiter.global_rate", float(func(c *Config) *float64 { return &c.Limiter.GlobalRate })},
	{"SECKILL_LIMIT_USER_RATE", "limiter.user_rate", float(func(c *Config) *float64 { return &c.Limiter.UserRate })},
	{"SECKILL_LIMIT_MAX_IN_FLIGHT", "limiter.max_in_flight", integer(func(c *Config) *int { return &c.Limiter.MaxInFlight })},
	{"SECKILL_SWEEP_INTERVAL", "sweeper.interval", dur(func(c *Config) *time.Duration { return &c.Sweeper.Interval })},
	{"SECKILL_BREAKER_FAILURES", "breaker.failures", integer(func(c *Config) *int { return &c.Breaker.Failures })},
	{"SECKILL_BREAKER_OPEN_FOR", "breaker.open_for", dur(func(c *Config) *time.Duration { return &c.Breaker.OpenFor })},
	{"SECKILL_LOG_LEVEL", "log.level", str(func(c *Config) *string { return &c.Log.Level })},
	{"SECKILL_PAYMENTS_CALLBACK_SECRET", "payments.callback_secret", str(func(c *Config) *string { return &c.Payments.CallbackSecret })},
	{"SECKILL_PAYMENTS_CALLBACK_WINDOW", "payments.callback_window", dur(func(c *Config) *time.Duration { return &c.Payments.CallbackWindow })},
	{"SECKILL_PAYMENTS_DEMO_PAY", "payments.demo_pay", boolean(func(c *Config) *bool { return &c.Payments.DemoPay })},
}

func boolean(p func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		*p(c) = b
		return err
	}
}

// setting names a yaml key for an error message, with the variable that
// overrides it, so an operator knows where to fix it.
func setting(key string) string {
	for _, o := range overrides {
		if o.key == key {
			return key + " (" + o.env + ")"
		}
	}
	return key
}

// LoadConfig reads the configuration; getenv is os.Getenv outside tests.
// It does not validate: see Validate.
func LoadConfig(getenv func(string) string) (Config, error) {
	c, err := defaultConfig()
	if err != nil {
		return c, err
	}
	if path := getenv("SECKILL_CONFIG"); path != "" {
		if err := layerFile(&c, path); err != nil {
			return c, err
		}
	}
	for _, o := range overrides {
		if v := getenv(o.env); v != "" {
			if err := o.set(&c, v); err != nil {
				return c, fmt.Errorf("%s=%q: %w", o.env, v, err)
			}
		}
	}
	return c, nil
}

// defaultConfig is the built-in configs/seckill.yaml.
func defaultConfig() (Config, error) {
	var c Config
	if err := decodeOver(&c, configs.Default); err != nil {
		return c, fmt.Errorf("built-in config: %w", err)
	}
	return c, nil
}

// layerFile decodes the file at path over c.
func layerFile(c *Config, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if err := decodeOver(c, data); err != nil {
		return fmt.Errorf("parse config %s: %w", path, err)
	}
	return nil
}

// decodeOver decodes YAML into c: keys the document names replace their
// value (a list is replaced, not merged), the others keep it. An unknown
// key is an error: a misspelt one would leave its setting at the default
// without anyone noticing.
func decodeOver(c *Config, data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) { // io.EOF: an empty file
		return err
	}
	return nil
}

// Validate reports what makes the configuration unusable for serving: a
// missing secret, an address that cannot work, and any interval, timeout,
// size or count that would panic (a ticker of 0) or quietly misbehave (a
// batch of 0, a timeout that never fires).
func (c Config) Validate() error {
	return errors.Join(
		c.validateSecrets(),
		c.validateHTTP(),
		c.validateMetrics(),
		c.validateRedis(),
		c.validateMySQL(),
		c.validateKafka(),
		c.validateOrders(),
		c.validateLimiter(),
		c.validateBreaker(),
		c.validateLog(),
	)
}

// checkJWTSecret is the rule for the user-token secret, shared by serve
// and the token command so that token never signs with a key serve refuses.
func checkJWTSecret(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("SECKILL_JWT_SECRET is required (at least %d bytes)", minJWTSecret)
	case len(s) < minJWTSecret:
		return fmt.Errorf("SECKILL_JWT_SECRET is %d bytes, want at least %d", len(s), minJWTSecret)
	}
	return nil
}

func (c Config) validateSecrets() error {
	var errs []error
	if c.Auth.AdminToken == "" {
		errs = append(errs, errors.New("SECKILL_ADMIN_TOKEN is required"))
	}
	if c.Auth.PurchaseKey == "" {
		errs = append(errs, fmt.Errorf("SECKILL_PURCHASE_KEY is required (at least %d bytes)", token.MinSecret))
	} else if _, err := c.PurchaseKeys(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(append(errs, checkJWTSecret(c.Auth.JWTSecret))...)
}

// PurchaseKeys are the purchase-token keys: auth.purchase_key signs and
// is accepted, auth.purchase_old_keys are accepted only. A rotation adds
// the new key to every instance's old keys first, then makes it the
// signing key (the old one moving to old keys), and drops the old one
// once order.token_ttl plus a day (how long a used token's answer is
// kept, which its retries read) have passed.
func (c Config) PurchaseKeys() (*token.Keys, error) {
	a := c.Auth
	if a.PurchaseKeyID < 0 || a.PurchaseKeyID > 255 {
		return nil, fmt.Errorf("%s must be 0-255, got %d", setting("auth.purchase_key_id"), a.PurchaseKeyID)
	}
	var old []token.Key
	for _, v := range a.PurchaseOldKeys {
		id, secret, ok := strings.Cut(v, ":")
		n, err := strconv.ParseUint(id, 10, 8)
		if !ok || err != nil {
			return nil, fmt.Errorf("%s: each must be \"id:secret\" with an id of 0-255, got %q", setting("auth.purchase_old_keys"), mask(v))
		}
		old = append(old, token.Key{ID: uint8(n), Secret: []byte(secret)})
	}
	k, err := token.NewKeys(token.Key{ID: uint8(a.PurchaseKeyID), Secret: []byte(a.PurchaseKey)}, old...)
	if err != nil {
		return nil, fmt.Errorf("SECKILL_PURCHASE_KEY, SECKILL_PURCHASE_OLD_KEYS: %w", err)
	}
	return k, nil
}

func (c Config) validateHTTP() error {
	h := c.HTTP
	return errors.Join(
		hostPort("http.addr", h.Addr),
		positive("http.read_timeout", h.ReadTimeout),
		positive("http.write_timeout", h.WriteTimeout),
		positive("http.idle_timeout", h.IdleTimeout),
		positive("http.shutdown_timeout", h.ShutdownTimeout),
	)
}

// validateMetrics: metrics.addr is empty (on http.addr) or another address.
func (c Config) validateMetrics() error {
	switch addr := c.Metrics.Addr; {
	case addr == "":
		return nil
	case addr == c.HTTP.Addr:
		return fmt.Errorf("%s must differ from http.addr (leave it empty to serve /metrics there)", setting("metrics.addr"))
	default:
		return hostPort("metrics.addr", addr)
	}
}

func (c Config) validateRedis() error {
	r := c.Redis
	errs := []error{
		required("redis.prefix", r.Prefix),
		atLeast("redis.pool_size", r.PoolSize, 1),
		positive("redis.timeout", r.Timeout),
		atLeast("redis.wait_replicas", r.WaitReplicas, 0),
		positive("redis.wait_timeout", r.WaitTimeout),
		positive("redis.start_wait", r.StartWait),
		positive("redis.policy_check", r.PolicyCheck),
	}
	switch r.Mode {
	case RedisSingle:
		switch {
		case strings.Contains(r.Addr, ","):
			errs = append(errs, fmt.Errorf("%s lists several addresses: that needs %s cluster", setting("redis.addr"), setting("redis.mode")))
		case r.Addr != Embedded:
			errs = append(errs, hostPort("redis.addr", r.Addr))
		}
	case RedisCluster:
		errs = append(errs, addrList("redis.addr", c.RedisAddrs(), "a cluster has no embedded stand-in"))
	default:
		errs = append(errs, fmt.Errorf("%s must be %q or %q, got %q", setting("redis.mode"), RedisSingle, RedisCluster, r.Mode))
	}
	// WAIT runs under the per-command timeout: past it the purchase fails
	// closed (503) although its reservation was taken.
	if r.WaitReplicas > 0 && r.WaitTimeout >= r.Timeout {
		errs = append(errs, fmt.Errorf("%s %v must be shorter than redis.timeout %v when replicas are awaited",
			setting("redis.wait_timeout"), r.WaitTimeout, r.Timeout))
	}
	// WAIT must run on the connection of the master that took the
	// reservation; a cluster pipeline sends a keyless command anywhere.
	if r.WaitReplicas > 0 && r.Mode == RedisCluster {
		errs = append(errs, fmt.Errorf("%s is not supported with %s cluster (each master's replicas are its own; use single mode with replicas, or 0)",
			setting("redis.wait_replicas"), setting("redis.mode")))
	}
	return errors.Join(errs...)
}

func (c Config) validateMySQL() error {
	m := c.MySQL
	errs := []error{
		atLeast("mysql.max_open_conns", m.MaxOpenConns, 1),
		positive("mysql.start_wait", m.StartWait),
		positive("mysql.dial_timeout", m.DialTimeout),
		positive("mysql.timeout", m.Timeout),
	}
	if m.DSN != Embedded {
		if _, err := mysql.ParseDSN(m.DSN); err != nil || m.DSN == "" {
			errs = append(errs, fmt.Errorf("%s is not a MySQL DSN (user:password@tcp(host:port)/db)", setting("mysql.dsn")))
		}
	}
	return errors.Join(errs...)
}

func (c Config) validateKafka() error {
	k := c.Kafka
	errs := []error{
		required("kafka.topic", k.Topic),
		required("kafka.group", k.Group),
		atLeast("kafka.partitions", k.Partitions, 1),
		positive("kafka.session_timeout", k.SessionTimeout),
	}
	if !(len(k.Brokers) == 1 && k.Brokers[0] == Embedded) {
		errs = append(errs, addrList("kafka.brokers", k.Brokers, "\"embedded\" must be the only broker"))
	}
	return errors.Join(errs...)
}

// validateOrders checks the pipeline after the purchase: every interval
// here drives a ticker or a lease, every size a loop. A purchase token must
// expire before the answer of its use does (stock.DefaultResultTTL), or it
// could be used again.
func (c Config) validateOrders() error {
	var ttl error
	if c.Order.TokenTTL >= stock.DefaultResultTTL {
		ttl = fmt.Errorf("%s must be shorter than %v (how long a used token's answer is kept), got %v",
			setting("order.token_ttl"), stock.DefaultResultTTL, c.Order.TokenTTL)
	}
	return errors.Join(ttl,
		positive("item.page_refresh", c.Item.PageRefresh),
		positive("order.ttl", c.Order.TTL),
		positive("order.token_ttl", c.Order.TokenTTL),
		positive("order.claim_timeout", c.Order.ClaimTimeout),
		atLeast("relay.batch_size", c.Relay.BatchSize, 1),
		positive("relay.claim_idle", c.Relay.ClaimIdle),
		notNegative("relay.linger", c.Relay.Linger),
		atLeast("consumer.batch_size", c.Consumer.BatchSize, 1),
		positive("consumer.batch_wait", c.Consumer.BatchWait),
		positive("sweeper.interval", c.Sweeper.Interval),
		atLeast("sweeper.batch", c.Sweeper.Batch, 1),
		positive("sweeper.lease", c.Sweeper.Lease),
		positive("reconciler.interval", c.Reconciler.Interval),
		positive("payments.callback_window", c.Payments.CallbackWindow),
		minSecret("payments.callback_secret", c.Payments.CallbackSecret),
	)
}

// minSecret: a payment callback secret, when set, is at least
// minJWTSecret bytes (an HMAC key as short as a password is guessed
// offline from one signed callback).
func minSecret(key, s string) error {
	if s != "" && len(s) < minJWTSecret {
		return fmt.Errorf("%s is %d bytes, want at least %d (or empty: callbacks off)", setting(key), len(s), minJWTSecret)
	}
	return nil
}

// validateLimiter allows 0, which turns a limit off (see limiter.Config),
// but not a negative or non-finite value, which is always a typo.
func (c Config) validateLimiter() error {
	l := c.Limiter
	return errors.Join(
		rate("limiter.global_rate", l.GlobalRate),
		rate("limiter.user_rate", l.UserRate),
		atLeast("limiter.global_burst", l.GlobalBurst, 0),
		atLeast("limiter.user_burst", l.UserBurst, 0),
		atLeast("limiter.max_in_flight", l.MaxInFlight, 0),
		notNegative("limiter.acquire_wait", l.AcquireWait),
	)
}

// validateBreaker: a breaker that opens on 0 failures, or stays open for
// 0, would refuse everything or nothing.
func (c Config) validateBreaker() error {
	b := c.Breaker
	return errors.Join(
		atLeast("breaker.failures", b.Failures, 1),
		positive("breaker.open_for", b.OpenFor),
		atLeast("breaker.probes", b.Probes, 1),
	)
}

// validateLog refuses a level newLogger would silently read as info.
func (c Config) validateLog() error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.Log.Level)); err != nil {
		return fmt.Errorf("%s must be debug, info, warn or error, got %q", setting("log.level"), c.Log.Level)
	}
	return nil
}

func positive(key string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s must be positive, got %v", setting(key), d)
	}
	return nil
}

func notNegative(key string, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("%s must not be negative, got %v", setting(key), d)
	}
	return nil
}

func atLeast[T int | int32 | int64](key string, v, least T) error {
	if v < least {
		return fmt.Errorf("%s must be at least %d, got %d", setting(key), least, v)
	}
	return nil
}

func rate(key string, v float64) error {
	if !(v >= 0) || math.IsInf(v, 0) { // !(v >= 0) also catches NaN
		return fmt.Errorf("%s must be a number >= 0 (0: no limit), got %v", setting(key), v)
	}
	return nil
}

func required(key, v string) error {
	if v == "" {
		return fmt.Errorf("%s is required", setting(key))
	}
	return nil
}

func hostPort(key, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%s must be host:port, got %q", setting(key), addr)
	}
	return nil
}

// addrList checks a list of host:port addresses; why says why "embedded"
// is not allowed in it.
func addrList(key string, addrs []string, why string) error {
	if len(addrs) == 0 {
		return fmt.Errorf("%s is empty", setting(key))
	}
	var errs []error
	for _, a := range addrs {
		if a == Embedded {
			errs = append(errs, fmt.Errorf("%s: %s", setting(key), why))
		} else {
			errs = append(errs, hostPort(key, a))
		}
	}
	return errors.Join(errs...)
}

func mask(s string) string {
	if s == "" {
		return ""
	}
	return "***"
}

// maskDSN hides the password of a MySQL DSN. It splits the DSN the way the
// driver does (the last '@' before the last '/', the first ':' before it),
// so a password holding '@' or ':' is hidden whole.
func maskDSN(dsn string) string {
	slash := strings.LastIndex(dsn, "/")
	if slash < 0 {
		return dsn
	}
	at := strings.LastIndex(dsn[:slash], "@")
	if at < 0 {
		return dsn
	}
	colon := strings.Index(dsn[:at], ":")
	if colon < 0 {
		return dsn // a user without a password
	}
	return dsn[:colon] + ":***" + dsn[at:]
}

// String prints the configuration with secrets masked.
func (c Config) String() string {
	c.Auth.AdminToken = mask(c.Auth.AdminToken)
	c.Auth.JWTSecret = mask(c.Auth.JWTSecret)
	c.Auth.PurchaseKey = mask(c.Auth.PurchaseKey)
	// A copy: the caller's config shares the slice.
	c.Auth.PurchaseOldKeys = slices.Clone(c.Auth.PurchaseOldKeys)
	for i, v := range c.Auth.PurchaseOldKeys {
		if id, _, ok := strings.Cut(v, ":"); ok {
			c.Auth.PurchaseOldKeys[i] = id + ":***"
		} else {
			c.Auth.PurchaseOldKeys[i] = mask(v)
		}
	}
	c.Payments.CallbackSecret = mask(c.Payments.CallbackSecret)
	c.MySQL.DSN = maskDSN(c.MySQL.DSN)
	b, _ := yaml.Marshal(c)
	return string(b)
}

// Deprecated lists the settings the configuration still names that no
// longer do anything, each with what to do instead.
func (c Config) Deprecated() []string {
	var out []string
	if c.Kafka.DLQTopic != "" {
		out = append(out, fmt.Sprintf("kafka.dlq_topic (%q) is deprecated and ignored: dead letters are rows of the MySQL table dead_letters; remove the key", c.Kafka.DLQTopic))
	}
	return out
}
