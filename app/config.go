package app

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"seckill/configs"
)

// Embedded is the address that asks for an in-process stand-in server.
const Embedded = "embedded"

// Config is the whole configuration, loaded once: configs/seckill.yaml (built
// in, or the file SECKILL_CONFIG names), then SECKILL_* environment overrides.
type Config struct {
	HTTP struct {
		Addr            string        `yaml:"addr"`
		ReadTimeout     time.Duration `yaml:"read_timeout"`
		WriteTimeout    time.Duration `yaml:"write_timeout"`
		IdleTimeout     time.Duration `yaml:"idle_timeout"`
		ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	} `yaml:"http"`
	Redis struct {
		Addr     string        `yaml:"addr"`
		Prefix   string        `yaml:"prefix"`
		PoolSize int           `yaml:"pool_size"`
		Timeout  time.Duration `yaml:"timeout"`
	} `yaml:"redis"`
	MySQL struct {
		DSN          string `yaml:"dsn"`
		MaxOpenConns int    `yaml:"max_open_conns"`
	} `yaml:"mysql"`
	Kafka struct {
		Brokers        []string      `yaml:"brokers"`
		Topic          string        `yaml:"topic"`
		DLQTopic       string        `yaml:"dlq_topic"`
		Partitions     int32         `yaml:"partitions"`
		Group          string        `yaml:"group"`
		SessionTimeout time.Duration `yaml:"session_timeout"`
	} `yaml:"kafka"`
	Auth struct {
		AdminToken string `yaml:"admin_token"`
		JWTSecret  string `yaml:"jwt_secret"`
	} `yaml:"auth"`
	Order struct {
		TTL      time.Duration `yaml:"ttl"`
		TokenTTL time.Duration `yaml:"token_ttl"`
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
	Log struct {
		Level string `yaml:"level"`
	} `yaml:"log"`
}

// override is one SECKILL_* variable and where it goes.
type override struct {
	name string
	set  func(c *Config, v string) error
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

func num[T int | int32 | float64](p func(*Config) *T) func(*Config, string) error {
	return func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		*p(c) = T(f)
		return err
	}
}

var overrides = []override{
	{"SECKILL_HTTP_ADDR", str(func(c *Config) *string { return &c.HTTP.Addr })},
	{"SECKILL_REDIS_ADDR", str(func(c *Config) *string { return &c.Redis.Addr })},
	{"SECKILL_REDIS_PREFIX", str(func(c *Config) *string { return &c.Redis.Prefix })},
	{"SECKILL_MYSQL_DSN", str(func(c *Config) *string { return &c.MySQL.DSN })},
	{"SECKILL_KAFKA_BROKERS", func(c *Config, v string) error {
		c.Kafka.Brokers = strings.Split(v, ",")
		return nil
	}},
	{"SECKILL_KAFKA_PARTITIONS", num(func(c *Config) *int32 { return &c.Kafka.Partitions })},
	{"SECKILL_ADMIN_TOKEN", str(func(c *Config) *string { return &c.Auth.AdminToken })},
	{"SECKILL_JWT_SECRET", str(func(c *Config) *string { return &c.Auth.JWTSecret })},
	{"SECKILL_ORDER_TTL", dur(func(c *Config) *time.Duration { return &c.Order.TTL })},
	{"SECKILL_TOKEN_TTL", dur(func(c *Config) *time.Duration { return &c.Order.TokenTTL })},
	{"SECKILL_LIMIT_GLOBAL_RATE", num(func(c *Config) *float64 { return &c.Limiter.GlobalRate })},
	{"SECKILL_LIMIT_USER_RATE", num(func(c *Config) *float64 { return &c.Limiter.UserRate })},
	{"SECKILL_LIMIT_MAX_IN_FLIGHT", num(func(c *Config) *int { return &c.Limiter.MaxInFlight })},
	{"SECKILL_SWEEP_INTERVAL", dur(func(c *Config) *time.Duration { return &c.Sweeper.Interval })},
	{"SECKILL_LOG_LEVEL", str(func(c *Config) *string { return &c.Log.Level })},
}

// LoadConfig reads the configuration; getenv is os.Getenv outside tests.
func LoadConfig(getenv func(string) string) (Config, error) {
	var c Config
	data := configs.Default
	if path := getenv("SECKILL_CONFIG"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read config: %w", err)
		}
		data = b
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("parse config: %w", err)
	}
	for _, o := range overrides {
		if v := getenv(o.name); v != "" {
			if err := o.set(&c, v); err != nil {
				return c, fmt.Errorf("%s=%q: %w", o.name, v, err)
			}
		}
	}
	return c, nil
}

// Validate reports what makes the configuration unusable for serving.
func (c Config) Validate() error {
	var errs []error
	if c.Auth.AdminToken == "" {
		errs = append(errs, errors.New("SECKILL_ADMIN_TOKEN is required"))
	}
	if len(c.Auth.JWTSecret) < 16 {
		errs = append(errs, errors.New("SECKILL_JWT_SECRET is required (at least 16 bytes)"))
	}
	if c.Order.TTL <= 0 {
		errs = append(errs, errors.New("order.ttl must be positive"))
	}
	if c.Kafka.Partitions < 1 {
		errs = append(errs, errors.New("kafka.partitions must be at least 1"))
	}
	if len(c.Kafka.Brokers) == 0 {
		errs = append(errs, errors.New("kafka.brokers is empty"))
	}
	return errors.Join(errs...)
}

func mask(s string) string {
	if s == "" {
		return ""
	}
	return "***"
}

// String prints the configuration with secrets masked.
func (c Config) String() string {
	c.Auth.AdminToken = mask(c.Auth.AdminToken)
	c.Auth.JWTSecret = mask(c.Auth.JWTSecret)
	if i := strings.Index(c.MySQL.DSN, "@"); i > 0 {
		if j := strings.Index(c.MySQL.DSN[:i], ":"); j > 0 {
			c.MySQL.DSN = c.MySQL.DSN[:j] + ":***" + c.MySQL.DSN[i:]
		}
	}
	b, _ := yaml.Marshal(c)
	return string(b)
}
