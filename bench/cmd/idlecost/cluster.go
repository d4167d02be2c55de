package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"
)

// cluster is one private Redis, MariaDB, Kafka broker (kfake process) and
// n seckill instances on ports of its own.
type cluster struct {
	name   string
	dir    string
	admin  string
	secret string

	redisPort, mysqlPort, kafkaPort int

	redis, mysql, kafka *proc
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
	p    *proc
}

// waitFor polls cond every interval until it holds or d passed.
func waitFor(ctx context.Context, d, interval time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			if last != nil {
				return fmt.Errorf("%s: not within %s: %w", what, d, last)
			}
			return fmt.Errorf("%s: not within %s", what, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

func (c *cluster) start(name string, env []string, bin string, args ...string) (*proc, error) {
	return startProc(name, filepath.Join(c.dir, name+".log"), env, bin, args...)
}

// newCluster starts everything; base..base+9 are its ports.
func newCluster(ctx context.Context, name, root string, base, apps int) (*cluster, error) {
	c := &cluster{name: name,
		admin:     "idlecost-admin-" + randHex(12),
		secret:    "idlecost-jwt-secret-" + randHex(24),
		redisPort: base, mysqlPort: base + 1, kafkaPort: base + 2,
	}
	for port := base; port < base+3+apps; port++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return nil, fmt.Errorf("port %d is taken (use -port-base): %w", port, err)
		}
		ln.Close()
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
		name, c.redisPort, c.redis.pid(), c.mysqlPort, c.mysql.pid(), c.kafkaPort, c.kafka.pid(), apps)
	return c, nil
}

func (c *cluster) close() {
	ps := []*proc{}
	for _, a := range c.apps {
		ps = append(ps, a.p)
	}
	ps = append(ps, c.kafka, c.mysql, c.redis)
	for _, p := range ps {
		if p != nil && p.alive() {
			p.expected.Store(true)
			_ = p.signal(syscall.SIGKILL)
			p.wait(10 * time.Second)
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
	dir := filepath.Join(c.dir, "redis-data")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	p, err := c.start("redis", nil, "redis-server", "--port", strconv.Itoa(c.redisPort), "--bind", "127.0.0.1",
		"--appendonly", "no", "--save", "", "--dir", dir, "--daemonize", "no", "--protected-mode", "no")
	if err != nil {
		return err
	}
	c.redis = p
	c.rdb = redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", c.redisPort),
		DialTimeout: time.Second, ReadTimeout: 5 * time.Second, MaxRetries: -1, PoolSize: 1, MinIdleConns: 1})
	return waitFor(ctx, 20*time.Second, 50*time.Millisecond, "redis PING", func() (bool, error) {
		if !p.alive() {
			return false, errors.New("redis exited; see " + p.logPath)
		}
		err := c.rdb.Ping(ctx).Err()
		return err == nil, err
	})
}

// ---------------------------------------------------------------- MariaDB

// mysqlTemplate returns a datadir initialised once per MariaDB version and
// cached across runs; each cluster runs on a copy.
func mysqlTemplate(cache string) (string, error) {
	out, err := exec.Command("mariadbd", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("mariadbd --version: %w", err)
	}
	key := "unknown"
	if ver := strings.Fields(string(out)); len(ver) >= 3 {
		key = strings.Map(func(r rune) rune {
			if r == '.' || r == '-' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') {
				return r
			}
			return '_'
		}, ver[2])
	}
	tpl := filepath.Join(cache, "mysql-template-"+key)
	if _, err := os.Stat(filepath.Join(tpl, "mysql")); err == nil {
		return tpl, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(cache, "init-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	data := filepath.Join(tmp, "data")
	cmd := exec.Command("mariadb-install-db", "--no-defaults", "--datadir="+data,
		"--auth-root-authentication-method=normal", "--user="+currentUser(), "--skip-test-db",
		"--innodb-log-file-size=16M")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("mariadb-install-db: %w\n%s", err, b)
	}
	os.RemoveAll(tpl)
	if err := os.Rename(data, tpl); err != nil {
		return "", err
	}
	return tpl, nil
}

func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if os.Geteuid() == 0 {
		return "root"
	}
	return strconv.Itoa(os.Geteuid())
}

func (c *cluster) startMySQL(ctx context.Context) error {
	data := filepath.Join(c.dir, "mysql-data")
	if out, err := exec.Command("cp", "-a", bins.mysqlTemplate, data).CombinedOutput(); err != nil {
		return fmt.Errorf("copy mysql template: %v: %s", err, out)
	}
	args := []string{"--no-defaults", "--datadir=" + data, "--port=" + strconv.Itoa(c.mysqlPort),
		"--socket=" + filepath.Join(c.dir, "mysql.sock"), "--bind-address=127.0.0.1", "--skip-networking=0",
		"--user=" + currentUser(), "--pid-file=" + filepath.Join(c.dir, "mysql.pid"),
		"--skip-name-resolve", "--innodb-buffer-pool-size=" + opt.bufferPool, "--innodb-log-file-size=256M",
		"--max-connections=500", "--max-allowed-packet=64M", "--log-error=" + filepath.Join(c.dir, "mysql-error.log")}
	p, err := c.start("mysql", nil, "mariadbd", args...)
	if err != nil {
		return err
	}
	c.mysql = p
	if c.pfs, err = sql.Open("mysql", fmt.Sprintf("root@tcp(127.0.0.1:%d)/?timeout=1s&readTimeout=30s", c.mysqlPort)); err != nil {
		return err
	}
	c.pfs.SetMaxOpenConns(1)
	err = waitFor(ctx, 60*time.Second, 100*time.Millisecond, "mariadb SELECT 1", func() (bool, error) {
		if !p.alive() {
			return false, errors.New("mariadbd exited; see " + p.logPath)
		}
		var one int
		err := c.pfs.QueryRowContext(ctx, "SELECT 1").Scan(&one)
		return err == nil && one == 1, err
	})
	if err != nil {
		return err
	}
	// serve creates the database too (and migrates it); creating it here
	// lets the handle below connect before the first instance is up.
	if _, err := c.pfs.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS seckill"); err != nil {
		return err
	}
	if c.db, err = sql.Open("mysql", fmt.Sprintf("root@tcp(127.0.0.1:%d)/seckill?parseTime=true&timeout=1s&readTimeout=120s", c.mysqlPort)); err != nil {
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
	p, err := c.start("kafka", nil, bins.kafka, "-addr", fmt.Sprintf("127.0.0.1:%d", c.kafkaPort), "-data-dir", c.kafkaDir)
	if err != nil {
		return err
	}
	c.kafka = p
	return waitFor(ctx, 20*time.Second, 50*time.Millisecond, "kafka listening", func() (bool, error) {
		if !p.alive() {
			return false, errors.New("kafka exited; see " + p.logPath)
		}
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.kafkaPort), 500*time.Millisecond)
		if err == nil {
			conn.Close()
		}
		return err == nil, err
	})
}

// stopKafka stops the broker (SIGTERM, so it flushes its data dir).
func (c *cluster) stopKafka() {
	c.kafka.term(20 * time.Second)
}

// ---------------------------------------------------------------- apps

func (c *cluster) appEnv(a *app) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SECKILL_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"SECKILL_HTTP_ADDR="+fmt.Sprintf("127.0.0.1:%d", a.port),
		fmt.Sprintf("SECKILL_REDIS_ADDR=127.0.0.1:%d", c.redisPort),
		"SECKILL_REDIS_PREFIX=idlecost",
		fmt.Sprintf("SECKILL_MYSQL_DSN=root@tcp(127.0.0.1:%d)/seckill?parseTime=true", c.mysqlPort),
		fmt.Sprintf("SECKILL_KAFKA_BROKERS=127.0.0.1:%d", c.kafkaPort),
		"SECKILL_ADMIN_TOKEN="+c.admin,
		"SECKILL_JWT_SECRET="+c.secret,
		// Nothing may expire during the run: an expiry is work, not idle.
		"SECKILL_ORDER_TTL=6h",
		"SECKILL_LIMIT_USER_RATE=100000",
		"SECKILL_LIMIT_GLOBAL_RATE=10000000",
		"SECKILL_LOG_LEVEL=info",
	)
}

var probe = &http.Client{Timeout: 5 * time.Second}

func (c *cluster) startApp(ctx context.Context, a *app) error {
	p, err := c.start(fmt.Sprintf("app%d", a.idx), c.appEnv(a), bins.seckill, "serve")
	if err != nil {
		return err
	}
	a.p = p
	return waitFor(ctx, 60*time.Second, 50*time.Millisecond, fmt.Sprintf("app%d /readyz 200", a.idx), func() (bool, error) {
		if !p.alive() {
			return false, fmt.Errorf("app%d exited: %v; see %s", a.idx, p.exitErr, p.logPath)
		}
		resp, err := probe.Get(a.url + "/readyz")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return false, fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return true, nil
	})
}

// appCPU is the summed CPU seconds of the instances.
func (c *cluster) appCPU() (float64, error) {
	var sum float64
	for _, a := range c.apps {
		s, err := cpuSeconds(a.p.pid())
		if err != nil {
			return 0, err
		}
		sum += s
	}
	return sum, nil
}
