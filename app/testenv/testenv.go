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
	"os"
	"strings"
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
	redisEnv = "SECKILL_TEST_REDIS_ADDR"
	mysqlEnv = "SECKILL_TEST_MYSQL_DSN"
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

// RedisAddr is the address of the test Redis server.
func RedisAddr() string {
	if a := os.Getenv(redisEnv); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// Redis returns a client of the real Redis and a key prefix of the test's
// own; every key under the prefix is deleted when the test ends.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: RedisAddr(), PoolSize: 64})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		unreachable(t, "redis", err)
	}
	prefix := "t" + ID()
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		rdb.Close()
	})
	return rdb, prefix
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
