package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"

	"seckill/bench/internal/harness"
)

// cluster is one private Redis, MariaDB, Kafka broker (kfake process) and
// n seckill instances on ports of its own.
type cluster struct {
	name   string
	dir    string
	admin  string
	secret string

	redisPort, mysqlPort, kafkaPort int

	redis, mysql, kafka *harness.Proc
	kafkaDir            string
	apps                []*app

	rdb *redis.Client // one connection, for INFO
	db  *sql.DB       // the seckill schema, for inserts and checks
	pfs *sql.DB       // no default schema, for server status and the general log
}

type app struct {
	idx  int
	port int
	url  string
	p    *harness.Proc
}

func (c *cluster) start(name string, env []string, bin string, args ...string) (*harness.Proc, error) {
	return procs.Start(name, filepath.Join(c.dir, name+".log"), env, bin, args...)
}

// newCluster starts everything; base..base+9 are its ports.
func newCluster(ctx context.Context, name, root string, base, apps int) (*cluster, error) {
	c := &cluster{name: name,
		admin:     "idlecost-admin-" + harness.RandHex(12),
		secret:    "idlecost-jwt-secret-" + harness.RandHex(24),
		redisPort: base, mysqlPort: base + 1, kafkaPort: base + 2,
	}
	var ports []int
	for port := base; port < base+3+apps; port++ {
		ports = append(ports, port)
	}
	if err := harness.PortsFree("use -port-base", ports...); err != nil {
		return nil, err
	}
	var err error
	c.dir = filepath.Join(root, name)
	if err = os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, err
	}
	if err := c.startRedis(ctx); err != nil {
		return c, err
	}
	if err := c.startMySQL(ctx); err != nil {
		return c, err
	}
	c.kafkaDir = filepath.Join(c.dir, "kafka-data")
	if err := c.startKafka(ctx); err != nil {
		return c, err
	}
	for i := 0; i < apps; i++ {
		a := &app{idx: i, port: base + 3 + i}
		a.url = fmt.Sprintf("http://127.0.0.1:%d", a.port)
		c.apps = append(c.apps, a)
		if err := c.startApp(ctx, a); err != nil {
			return c, err
		}
	}
	progress("%s: up: redis :%d (pid %d), mariadb :%d (pid %d), kafka :%d (pid %d), %d seckill instance(s)",
		name, c.redisPort, c.redis.Pid(), c.mysqlPort, c.mysql.Pid(), c.kafkaPort, c.kafka.Pid(), apps)
	return c, nil
}

func (c *cluster) close() {
	ps := []*harness.Proc{}
	for _, a := range c.apps {
		ps = append(ps, a.p)
	}
	ps = append(ps, c.kafka, c.mysql, c.redis)
	for _, p := range ps {
		if p != nil && p.Alive() {
			p.Kill9()
		}
	}
	for _, db := range []*sql.DB{c.db, c.pfs} {
		if db != nil {
			db.Close()
		}
	}
	if c.rdb != nil {
		c.rdb.Close()
	}
	if !opt.keep && c.dir != "" {
		os.RemoveAll(c.dir)
	}
}

// ---------------------------------------------------------------- Redis

func (c *cluster) startRedis(ctx context.Context) error {
	dir, err := harness.Mkdir(c.dir, "redis-data")
	if err != nil {
		return err
	}
	c.rdb = redis.NewClient(&redis.Options{Addr: harness.Addr(c.redisPort),
		DialTimeout: time.Second, ReadTimeout: 5 * time.Second, MaxRetries: -1, PoolSize: 1, MinIdleConns: 1})
	p, err := harness.StartRedis(ctx, c.start, c.rdb, "redis", c.redisPort, dir, "--appendonly", "no")
	if p != nil {
		c.redis = p
	}
	return err
}

// ---------------------------------------------------------------- MariaDB

func (c *cluster) startMySQL(ctx context.Context) error {
	data := filepath.Join(c.dir, "mysql-data")
	if err := harness.CopyTemplate(bins.MySQLTemplate, data); err != nil {
		return err
	}
	var err error
	if c.pfs, err = sql.Open("mysql", harness.DSN(c.mysqlPort, "", "timeout=1s&readTimeout=30s")); err != nil {
		return err
	}
	c.pfs.SetMaxOpenConns(1)
	m := harness.MariaDB{Dir: c.dir, DataDir: data, Port: c.mysqlPort, ErrorLog: filepath.Join(c.dir, "mysql-error.log"),
		Extra: []string{"--innodb-buffer-pool-size=" + opt.bufferPool, "--innodb-log-file-size=256M", "--max-allowed-packet=64M"}}
	p, err := m.Start(ctx, c.start, c.pfs)
	if p != nil {
		c.mysql = p
	}
	if err != nil {
		return err
	}
	// serve creates the database too (and migrates it); creating it here
	// lets the handle below connect before the first instance is up.
	if _, err := c.pfs.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS seckill"); err != nil {
		return err
	}
	if c.db, err = sql.Open("mysql", harness.DSN(c.mysqlPort, "seckill", "parseTime=true&timeout=1s&readTimeout=120s")); err != nil {
		return err
	}
	c.db.SetMaxOpenConns(8)
	return nil
}

// ---------------------------------------------------------------- Kafka

func (c *cluster) startKafka(ctx context.Context) error {
	if err := os.MkdirAll(c.kafkaDir, 0o755); err != nil {
		return err
	}
	p, err := harness.StartKafka(ctx, c.start, bins.Kafka, c.kafkaPort, c.kafkaDir)
	if p != nil {
		c.kafka = p
	}
	return err
}

// stopKafka stops the broker (SIGTERM, so it flushes its data dir).
func (c *cluster) stopKafka() {
	_ = c.kafka.Term(20 * time.Second)
}

// ---------------------------------------------------------------- apps

func (c *cluster) appEnv(a *app) []string {
	return harness.AppEnv{HTTPPort: a.port, RedisAddr: harness.Addr(c.redisPort), RedisPrefix: "idlecost",
		MySQLPort: c.mysqlPort, KafkaPort: c.kafkaPort, AdminToken: c.admin, JWTSecret: c.secret,
		// Nothing may expire during the run: an expiry is work, not idle.
		OrderTTL: "6h"}.Environ()
}

var probe = &http.Client{Timeout: 5 * time.Second}

func (c *cluster) startApp(ctx context.Context, a *app) error {
	p, err := c.start(fmt.Sprintf("app%d", a.idx), c.appEnv(a), bins.Seckill, "serve")
	if err != nil {
		return err
	}
	a.p = p
	return harness.WaitReady(ctx, p, probe, a.url, 60*time.Second)
}

// appCPU is the summed CPU seconds of the instances.
func (c *cluster) appCPU() (float64, error) {
	var sum float64
	for _, a := range c.apps {
		s, err := cpuSeconds(a.p.Pid())
		if err != nil {
			return 0, err
		}
		sum += s
	}
	return sum, nil
}
