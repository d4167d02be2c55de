// Package testenv gives tests their own slice of the real servers: a Redis
// key prefix, a fresh MySQL database with the schema applied, an in-process
// Kafka broker. A test whose server is unreachable skips when run by hand and
// fails under CI=true.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"

	"seckill/migrations"
)

// Env var names of the servers tests use, with this machine's defaults.
const (
	redisEnv     = "SECKILL_TEST_REDIS_ADDR"
	redisModeEnv = "SECKILL_TEST_REDIS_MODE"
	mysqlEnv     = "SECKILL_TEST_MYSQL_DSN"
)

func unreachable(t testing.TB, what string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s unreachable under CI: %v", what, err)
	}
	t.Skipf("%s unreachable, skipping: %v", what, err)
}

// ID returns a short random name part, unique per call.
func ID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// TokenID is a fresh purchase token ID as the stock keys it (the form of
// stock.TokenString): what the stock tests buy with, the token's signature
// being checked above the stock (package order/token).
func TokenID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// RedisAddr is the address of the test Redis server; in cluster mode a
// comma-separated list of seed nodes.
func RedisAddr() string {
	if a := os.Getenv(redisEnv); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// RedisCluster reports whether the tests run against a Redis Cluster
// (SECKILL_TEST_REDIS_MODE=cluster).
func RedisCluster() bool { return os.Getenv(redisModeEnv) == "cluster" }

// RedisEnv is the app configuration that points a seckill process at the
// test Redis, in the tests' mode.
func RedisEnv() map[string]string {
	mode := "single"
	if RedisCluster() {
		mode = "cluster"
	}
	return map[string]string{"SECKILL_REDIS_ADDR": RedisAddr(), "SECKILL_REDIS_MODE": mode}
}

// NewRedis is a client of the test Redis in the tests' mode, with the
// options of o that apply (Addr is ignored).
func NewRedis(o redis.Options) redis.UniversalClient {
	if RedisCluster() {
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: strings.Split(RedisAddr(), ","), PoolSize: o.PoolSize, ClientName: o.ClientName,
			MaxRetries: o.MaxRetries, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
		})
	}
	o.Addr = RedisAddr()
	return redis.NewClient(&o)
}

// Redis returns a client of the real Redis (a cluster client in cluster
// mode) and a key prefix of the test's own; every key under the prefix is
// deleted when the test ends.
func Redis(t testing.TB) (redis.UniversalClient, string) {
	t.Helper()
	rdb := NewRedis(redis.Options{PoolSize: 64})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ForEachNode(ctx, rdb, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() }); err != nil {
		rdb.Close()
		unreachable(t, "redis", err)
	}
	prefix := "t" + ID()
	t.Cleanup(func() {
		DeleteKeys(context.Background(), rdb, prefix+":*")
		rdb.Close()
	})
	return rdb, prefix
}

// ForEachNode calls fn with a client of every master (of the one server
// in single mode).
func ForEachNode(ctx context.Context, rdb redis.UniversalClient, fn func(context.Context, *redis.Client) error) error {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	}
	return fmt.Errorf("testenv: unknown redis client %T", rdb)
}

// Keys lists the keys matching pattern on every node (SCAN, not KEYS).
func Keys(ctx context.Context, rdb redis.UniversalClient, pattern string) []string {
	var mu sync.Mutex
	var out []string
	ForEachNode(ctx, rdb, func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			out = append(out, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	})
	slices.Sort(out)
	return out
}

// DeleteKeys deletes every key matching pattern, one DEL per key (no
// multi-key command spans slots), as a Redis that lost them would.
func DeleteKeys(ctx context.Context, rdb redis.UniversalClient, pattern string) int {
	keys := Keys(ctx, rdb, pattern)
	for _, k := range keys {
		rdb.Del(ctx, k)
	}
	return len(keys)
}

// RoundTrips is a go-redis hook counting the requests a client sends (a
// command, or a whole pipeline, once each).
type RoundTrips struct{ N atomic.Int64 }

func (h *RoundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *RoundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.N.Add(1); return next(ctx, cmd) }
}
func (h *RoundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.N.Add(1); return next(ctx, cmds) }
}

// OneConn opens dsn with a single connection, so that one session runs
// every statement and its status (RowsRead) counts them; closed when the
// test ends.
func OneConn(t testing.TB, dsn string) *sqlx.DB {
	t.Helper()
	db, err := sqlx.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	return db
}

// RowsRead is how many rows the session of db has read so far (InnoDB
// handler reads: index and table rows). Give db one connection
// (SetMaxOpenConns(1)) so its session is the one that ran the statements.
func RowsRead(t testing.TB, db *sqlx.DB) int64 {
	t.Helper()
	rows, err := db.Query("SHOW SESSION STATUS LIKE 'Handler_read%'")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var total int64
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(name, "_key") || name == "Handler_read_key" {
			total += n
		}
	}
	return total
}

// MySQLDSN is the DSN of the test MySQL server, without a database.
func MySQLDSN() string {
	if d := os.Getenv(mysqlEnv); d != "" {
		return d
	}
	return "root@tcp(127.0.0.1:3306)/?parseTime=true"
}

// MySQL creates a fresh database with the schema applied and returns its DSN
// and a handle; the database is dropped when the test ends.
func MySQL(t testing.TB) (string, *sqlx.DB) {
	t.Helper()
	cfg, err := mysql.ParseDSN(MySQLDSN())
	if err != nil {
		t.Fatalf("parse test dsn: %v", err)
	}
	root, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatalf("open mysql: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := root.PingContext(ctx); err != nil {
		root.Close()
		unreachable(t, "mysql", err)
	}
	name := "seckill_t" + ID()
	if _, err := root.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	cfg.DBName = name
	dsn := cfg.FormatDSN()
	db, err := sqlx.Open("mysql", dsn)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	t.Cleanup(func() {
		db.Close()
		root.Exec("DROP DATABASE IF EXISTS " + name)
		root.Close()
	})
	if err := migrations.Up(context.Background(), db.DB); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return dsn, db
}

// Kafka starts an in-process Kafka broker (kfake, the real wire protocol)
// for the test and returns its bootstrap addresses.
func Kafka(t testing.TB, opts ...kfake.Opt) []string {
	t.Helper()
	// Short group session timeouts let tests notice a dead member quickly.
	opts = append([]kfake.Opt{kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100 * time.Millisecond)}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// Topic returns a topic name of the test's own.
func Topic(base string) string {
	return strings.ReplaceAll(base, "/", "_") + "." + ID()
}
