package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"
)

// cluster is everything one scenario runs on, started fresh for it: Redis
// (and a replica behind a proxy), MariaDB, the Kafka broker and one or two
// seckill instances, on ports of their own.
type cluster struct {
	sc     *scenario
	dir    string
	t0     time.Time
	admin  string
	secret string

	redisPort, replicaPort, proxyPort, mysqlPort, kafkaPort int

	redis    *proc
	redisDir string
	replica  *proc
	px       *proxy
	mysql    *proc
	mysqlDir string
	kafka    *proc
	kafkaDir string
	rc       *redisCluster  // the scenario runs on a Redis Cluster instead of redis
	gen      map[string]int // incarnations per component, for log names
	apps     []*app

	db *sql.DB

	mu      sync.Mutex
	crashes []string
	logs    []string
}

// app is one seckill instance.
type app struct {
	idx  int
	port int
	url  string
	mu   sync.Mutex
	p    *proc
	// down: the harness took it down on purpose (killed, stopped,
	// restarting); errors talking to it are expected meanwhile. gone: it
	// stays down for the rest of the scenario.
	down atomic.Bool
	gone atomic.Bool
}

func (a *app) proc() *proc {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.p
}

func (c *cluster) since() float64 { return time.Since(c.t0).Seconds() }

func (c *cluster) logf(format string, args ...any) {
	if opt.v {
		fmt.Fprintf(os.Stderr, "[%s +%5.1fs] %s\n", c.sc.name, c.since(), fmt.Sprintf(format, args...))
	}
}

func (c *cluster) crash(msg string) {
	c.mu.Lock()
	c.crashes = append(c.crashes, msg)
	c.mu.Unlock()
	c.logf("CRASH: %s", msg)
}

func (c *cluster) crashList() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.crashes...)
}

// start launches a component and reports it if it exits without the
// harness asking.
func (c *cluster) start(name string, env []string, bin string, args ...string) (*proc, error) {
	c.mu.Lock()
	if c.gen == nil {
		c.gen = map[string]int{}
	}
	c.gen[name]++
	logPath := filepath.Join(c.dir, fmt.Sprintf("%s.%d.log", name, c.gen[name]))
	c.logs = append(c.logs, logPath)
	c.mu.Unlock()
	p, err := startProc(name, logPath, env, bin, args...)
	if err != nil {
		return nil, err
	}
	go func() {
		<-p.done
		if !p.expected.Load() {
			c.crash(fmt.Sprintf("%s (pid %d) exited by itself at +%.1fs: %v; log %s", name, p.pid(), c.since(), p.exitErr, logPath))
		}
	}()
	return p, nil
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

func mkdir(parts ...string) (string, error) {
	d := filepath.Join(parts...)
	return d, os.MkdirAll(d, 0o755)
}

// ---------------------------------------------------------------- Redis

func (c *cluster) startRedis(name string, port int, dir, fsync, replicaOf string) (*proc, error) {
	args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--appendonly", "yes",
		"--appendfsync", fsync, "--dir", dir, "--save", "", "--daemonize", "no", "--protected-mode", "no"}
	if replicaOf != "" {
		h, p, _ := net.SplitHostPort(replicaOf)
		args = append(args, "--replicaof", h, p)
	}
	p, err := c.start(name, nil, "redis-server", args...)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), DialTimeout: 500 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	err = waitFor(context.Background(), 20*time.Second, 50*time.Millisecond, name+" PING", func() (bool, error) {
		if !p.alive() {
			return false, errors.New("exited")
		}
		err := rdb.Ping(context.Background()).Err()
		return err == nil, err
	})
	return p, err
}

func (c *cluster) redisFsync() string {
	if c.sc.fsyncAlways {
		return "always"
	}
	return "everysec"
}

// startPrimary starts Redis on its port; fresh gives it a new empty dir.
func (c *cluster) startPrimary(fresh bool) error {
	if fresh || c.redisDir == "" {
		c.mu.Lock()
		n := c.gen["redis"] + 1
		c.mu.Unlock()
		d, err := mkdir(c.dir, fmt.Sprintf("redis-data-%d", n))
		if err != nil {
			return err
		}
		c.redisDir = d
	}
	p, err := c.startRedis("redis", c.redisPort, c.redisDir, c.redisFsync(), "")
	c.redis = p
	return err
}

func (c *cluster) redisAddr() string {
	if c.rc != nil {
		return c.rc.seeds()
	}
	if c.px != nil {
		return fmt.Sprintf("127.0.0.1:%d", c.proxyPort)
	}
	return fmt.Sprintf("127.0.0.1:%d", c.redisPort)
}

func (c *cluster) redisMode() string {
	if c.rc != nil {
		return "cluster"
	}
	return "single"
}

func redisDo(addr string, args ...any) (any, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return rdb.Do(ctx, args...).Result()
}

// ---------------------------------------------------------------- MariaDB

// mysqlTemplate returns a datadir initialised once per MariaDB version and
// cached across runs; each scenario runs on a copy.
func mysqlTemplate(cache string) (string, error) {
	out, err := exec.Command("mariadbd", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("mariadbd --version: %w", err)
	}
	ver := strings.Fields(string(out))
	key := "unknown"
	if len(ver) >= 3 {
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

func (c *cluster) startMySQL() error {
	c.mu.Lock()
	errLog := filepath.Join(c.dir, fmt.Sprintf("mysql-error.%d.log", c.gen["mysql"]+1))
	c.logs = append(c.logs, errLog)
	c.mu.Unlock()
	args := []string{"--no-defaults", "--datadir=" + c.mysqlDir, "--port=" + strconv.Itoa(c.mysqlPort),
		"--socket=" + filepath.Join(c.dir, "mysql.sock"), "--bind-address=127.0.0.1", "--skip-networking=0",
		"--user=" + currentUser(), "--pid-file=" + filepath.Join(c.dir, "mysql.pid"),
		"--skip-name-resolve", "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M",
		"--max-connections=500", "--log-error=" + errLog}
	p, err := c.start("mysql", nil, "mariadbd", args...)
	if err != nil {
		return err
	}
	c.mysql = p
	db, err := sql.Open("mysql", fmt.Sprintf("root@tcp(127.0.0.1:%d)/?timeout=1s&readTimeout=2s", c.mysqlPort))
	if err != nil {
		return err
	}
	defer db.Close()
	return waitFor(context.Background(), 60*time.Second, 100*time.Millisecond, "mariadb SELECT 1", func() (bool, error) {
		if !p.alive() {
			return false, errors.New("mariadbd exited; see " + p.logPath)
		}
		var one int
		err := db.QueryRow("SELECT 1").Scan(&one)
		return err == nil && one == 1, err
	})
}

// stopMySQL sends SIGTERM to mariadbd and waits for it to exit.
func (c *cluster) stopMySQL() error {
	return c.mysql.term(60 * time.Second)
}

// ---------------------------------------------------------------- Kafka

func (c *cluster) startKafka(fresh bool) error {
	args := []string{"-addr", fmt.Sprintf("127.0.0.1:%d", c.kafkaPort)}
	if fresh || c.kafkaDir == "" {
		d, err := mkdir(c.dir, fmt.Sprintf("kafka-data-%d", c.gen["kafka"]+1))
		if err != nil {
			return err
		}
		c.kafkaDir = d
	}
	args = append(args, "-data-dir", c.kafkaDir)
	p, err := c.start("kafka", nil, bins.kafka, args...)
	if err != nil {
		return err
	}
	c.kafka = p
	return waitFor(context.Background(), 20*time.Second, 50*time.Millisecond, "kafka listening", func() (bool, error) {
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

// ---------------------------------------------------------------- apps

func (c *cluster) appEnv(a *app) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SECKILL_") {
			env = append(env, kv)
		}
	}
	ttl := time.Hour
	if c.sc.orderTTL > 0 {
		ttl = c.sc.orderTTL
	}
	env = append(env,
		"SECKILL_HTTP_ADDR="+fmt.Sprintf("127.0.0.1:%d", a.port),
		"SECKILL_REDIS_ADDR="+c.redisAddr(),
		"SECKILL_REDIS_MODE="+c.redisMode(),
		"SECKILL_REDIS_PREFIX=faults",
		"SECKILL_MYSQL_DSN="+fmt.Sprintf("root@tcp(127.0.0.1:%d)/seckill?parseTime=true", c.mysqlPort),
		"SECKILL_KAFKA_BROKERS="+fmt.Sprintf("127.0.0.1:%d", c.kafkaPort),
		"SECKILL_KAFKA_PARTITIONS=4",
		"SECKILL_ADMIN_TOKEN="+c.admin,
		"SECKILL_JWT_SECRET="+c.secret,
		"SECKILL_ORDER_TTL="+ttl.String(),
		"SECKILL_LIMIT_USER_RATE=100000",
		"SECKILL_LIMIT_GLOBAL_RATE=10000000",
		"SECKILL_LIMIT_MAX_IN_FLIGHT=16384",
		"SECKILL_CLAIM_TIMEOUT="+opt.claimTimeout.String(),
		"SECKILL_LOG_LEVEL=info",
	)
	for k, v := range c.sc.env {
		env = append(env, k+"="+v)
	}
	return env
}

var probe = &http.Client{Timeout: 2 * time.Second}

func getStatus(url string) (int, error) {
	resp, err := probe.Get(url)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// startApp starts instance a and waits for GET /readyz 200.
func (c *cluster) startApp(a *app) error {
	p, err := c.start(fmt.Sprintf("app%d", a.idx), c.appEnv(a), bins.seckill, "serve")
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.p = p
	a.mu.Unlock()
	return c.waitReady(a, 60*time.Second)
}

func (c *cluster) waitReady(a *app, d time.Duration) error {
	p := a.proc()
	return waitFor(context.Background(), d, 50*time.Millisecond, fmt.Sprintf("app%d /readyz 200", a.idx), func() (bool, error) {
		if !p.alive() {
			return false, fmt.Errorf("app%d exited: %v; see %s", a.idx, p.exitErr, p.logPath)
		}
		st, err := getStatus(a.url + "/readyz")
		if err == nil && st != 200 {
			err = fmt.Errorf("readyz %d", st)
		}
		return err == nil, err
	})
}

// ---------------------------------------------------------------- setup

func newCluster(sc *scenario, idx int, root string) (*cluster, error) {
	base := opt.portBase + idx*10
	c := &cluster{sc: sc, t0: time.Now(),
		admin:     "faults-admin-" + randHex(12),
		secret:    "faults-jwt-secret-" + randHex(24),
		redisPort: base, replicaPort: base + 1, proxyPort: base + 2, mysqlPort: base + 3, kafkaPort: base + 4,
	}
	ports := []int{}
	for port := base; port < base+10; port++ {
		ports = append(ports, port)
	}
	var rcPorts, rcBus []int
	if sc.redisCluster {
		rcPorts, rcBus = clusterPorts(idx)
		ports = append(append(ports, rcPorts...), rcBus...)
	}
	for _, port := range ports {
		if err := portFree(port); err != nil {
			return nil, err
		}
	}
	var err error
	if c.dir, err = mkdir(root, sc.name); err != nil {
		return nil, err
	}
	if sc.redisCluster {
		if err := c.startRedisCluster(rcPorts, rcBus); err != nil {
			return c, err
		}
	} else if err := c.startPrimary(true); err != nil {
		return c, err
	}
	if sc.replica {
		d, err := mkdir(c.dir, "replica-data")
		if err != nil {
			return c, err
		}
		c.replica, err = c.startRedis("replica", c.replicaPort, d, "always", fmt.Sprintf("127.0.0.1:%d", c.redisPort))
		if err != nil {
			return c, err
		}
		err = waitFor(context.Background(), 20*time.Second, 100*time.Millisecond, "replica link up", func() (bool, error) {
			v, err := redisDo(fmt.Sprintf("127.0.0.1:%d", c.replicaPort), "INFO", "replication")
			s, _ := v.(string)
			return strings.Contains(s, "master_link_status:up"), err
		})
		if err != nil {
			return c, err
		}
		if c.px, err = newProxy(fmt.Sprintf("127.0.0.1:%d", c.proxyPort), fmt.Sprintf("127.0.0.1:%d", c.redisPort)); err != nil {
			return c, err
		}
	}
	c.mysqlDir = filepath.Join(c.dir, "mysql-data")
	if out, err := exec.Command("cp", "-a", bins.mysqlTemplate, c.mysqlDir).CombinedOutput(); err != nil {
		return c, fmt.Errorf("copy mysql template: %v: %s", err, out)
	}
	if err := c.startMySQL(); err != nil {
		return c, err
	}
	if c.db, err = sql.Open("mysql", fmt.Sprintf("root@tcp(127.0.0.1:%d)/seckill?parseTime=true&timeout=1s&readTimeout=5s", c.mysqlPort)); err != nil {
		return c, err
	}
	c.db.SetMaxOpenConns(4)
	if err := c.startKafka(true); err != nil {
		return c, err
	}
	for i := 0; i < sc.apps; i++ {
		a := &app{idx: i, port: base + 5 + i}
		a.url = fmt.Sprintf("http://127.0.0.1:%d", a.port)
		c.apps = append(c.apps, a)
		if err := c.startApp(a); err != nil {
			return c, err
		}
	}
	c.logf("cluster up: redis %s, mysql %d, kafka %d, apps %d", c.redisAddr(), c.mysqlPort, c.kafkaPort, sc.apps)
	return c, nil
}

// close stops every process of the cluster (SIGKILL: nothing of it is kept
// but the logs) and removes its directory unless keep; a failed scenario
// (dump) keeps its logs, only its data dirs are removed.
func (c *cluster) close(keep, dump bool) {
	var ps []*proc
	for _, a := range c.apps {
		if p := a.proc(); p != nil {
			ps = append(ps, p)
			if dump && p.alive() {
				p.expected.Store(true)
				_ = p.signal(syscall.SIGCONT)
				_ = p.signal(syscall.SIGQUIT)
			}
		}
	}
	if dump {
		for _, p := range ps {
			p.wait(5 * time.Second)
		}
	}
	ps = append(ps, c.replica, c.redis, c.kafka, c.mysql)
	if c.rc != nil {
		for _, n := range c.rc.nodes {
			ps = append(ps, n.p)
		}
	}
	for _, p := range ps {
		if p != nil && p.alive() {
			p.expected.Store(true)
			_ = p.signal(syscall.SIGCONT)
			p.kill9()
		}
	}
	if c.px != nil {
		c.px.close()
	}
	if c.db != nil {
		c.db.Close()
	}
	switch {
	case keep || c.dir == "":
	case dump:
		ents, _ := os.ReadDir(c.dir)
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".log") {
				os.RemoveAll(filepath.Join(c.dir, e.Name()))
			}
		}
	default:
		os.RemoveAll(c.dir)
	}
}

// liveApps are the instances not taken down by the harness.
func (c *cluster) liveApps() []*app {
	var out []*app
	for _, a := range c.apps {
		if !a.down.Load() && !a.gone.Load() {
			out = append(out, a)
		}
	}
	return out
}
