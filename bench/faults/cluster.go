package main

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"

	"seckill/bench/internal/harness"
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
	mysqlProxyPort, kafkaProxyPort                          int

	redis    *harness.Proc
	redisDir string
	replica  *harness.Proc
	px       *proxy // Redis proxy (failover, or a stall scenario's)
	mpx, kpx *proxy // MariaDB and broker proxies of a stall scenario
	mysql    *harness.Proc
	mysqlDir string
	kafka    *harness.Proc
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
	p    *harness.Proc
	// down: the harness took it down on purpose (killed, stopped,
	// restarting); errors talking to it are expected meanwhile. gone: it
	// stays down for the rest of the scenario.
	down atomic.Bool
	gone atomic.Bool
}

func (a *app) proc() *harness.Proc {
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
func (c *cluster) start(name string, env []string, bin string, args ...string) (*harness.Proc, error) {
	c.mu.Lock()
	if c.gen == nil {
		c.gen = map[string]int{}
	}
	c.gen[name]++
	logPath := filepath.Join(c.dir, fmt.Sprintf("%s.%d.log", name, c.gen[name]))
	c.logs = append(c.logs, logPath)
	c.mu.Unlock()
	p, err := procs.Start(name, logPath, env, bin, args...)
	if err != nil {
		return nil, err
	}
	go func() {
		<-p.Done()
		if !p.Expected() {
			c.crash(fmt.Sprintf("%s (pid %d) exited by itself at +%.1fs: %v; log %s", name, p.Pid(), c.since(), p.ExitErr(), logPath))
		}
	}()
	return p, nil
}

// ---------------------------------------------------------------- Redis

func (c *cluster) startRedis(name string, port int, dir, fsync, replicaOf string) (*harness.Proc, error) {
	args := []string{"--appendonly", "yes", "--appendfsync", fsync}
	if replicaOf != "" {
		h, p, _ := net.SplitHostPort(replicaOf)
		args = append(args, "--replicaof", h, p)
	}
	rdb := redis.NewClient(&redis.Options{Addr: harness.Addr(port), DialTimeout: 500 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	return harness.StartRedis(context.Background(), c.start, rdb, name, port, dir, args...)
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
		d, err := harness.Mkdir(c.dir, fmt.Sprintf("redis-data-%d", n))
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
		return harness.Addr(c.proxyPort)
	}
	return harness.Addr(c.redisPort)
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

func (c *cluster) startMySQL() error {
	c.mu.Lock()
	errLog := filepath.Join(c.dir, fmt.Sprintf("mysql-error.%d.log", c.gen["mysql"]+1))
	c.logs = append(c.logs, errLog)
	c.mu.Unlock()
	db, err := sql.Open("mysql", harness.DSN(c.mysqlPort, "", "timeout=1s&readTimeout=2s"))
	if err != nil {
		return err
	}
	defer db.Close()
	m := harness.MariaDB{Dir: c.dir, DataDir: c.mysqlDir, Port: c.mysqlPort, ErrorLog: errLog,
		Extra: []string{"--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M"}}
	p, err := m.Start(context.Background(), c.start, db)
	if p != nil {
		c.mysql = p
	}
	return err
}

// stopMySQL sends SIGTERM to mariadbd and waits for it to exit.
func (c *cluster) stopMySQL() error {
	return c.mysql.Term(60 * time.Second)
}

// ---------------------------------------------------------------- Kafka

func (c *cluster) startKafka(fresh bool) error {
	if fresh || c.kafkaDir == "" {
		d, err := harness.Mkdir(c.dir, fmt.Sprintf("kafka-data-%d", c.gen["kafka"]+1))
		if err != nil {
			return err
		}
		c.kafkaDir = d
	}
	if c.kpx == nil {
		p, err := harness.StartKafka(context.Background(), c.start, bins.Kafka, c.kafkaPort, c.kafkaDir)
		if p != nil {
			c.kafka = p
		}
		return err
	}
	// Behind its proxy the broker names the proxy in its metadata, or the
	// apps would bootstrap through the proxy and then go around it.
	p, err := c.start("kafka", nil, bins.Kafka, "-addr", harness.Addr(c.kafkaPort), "-data-dir", c.kafkaDir,
		"-advertise", harness.Addr(c.kafkaProxyPort))
	if err != nil {
		return err
	}
	c.kafka = p
	return harness.WaitUp(context.Background(), p, 20*time.Second, 50*time.Millisecond, "kafka listening", func() error {
		conn, err := net.DialTimeout("tcp", harness.Addr(c.kafkaPort), 500*time.Millisecond)
		if err == nil {
			conn.Close()
		}
		return err
	})
}

// ---------------------------------------------------------------- apps

func (c *cluster) appEnv(a *app) []string {
	ttl := time.Hour
	if c.sc.orderTTL > 0 {
		ttl = c.sc.orderTTL
	}
	mysqlPort, kafkaPort := c.mysqlPort, c.kafkaPort
	if c.mpx != nil {
		mysqlPort = c.mysqlProxyPort
	}
	if c.kpx != nil {
		kafkaPort = c.kafkaProxyPort
	}
	e := harness.AppEnv{HTTPPort: a.port, RedisAddr: c.redisAddr(), RedisPrefix: "faults",
		MySQLPort: mysqlPort, KafkaPort: kafkaPort, AdminToken: c.admin, JWTSecret: c.secret, OrderTTL: ttl.String()}
	extra := []string{
		"SECKILL_REDIS_MODE=" + c.redisMode(),
		"SECKILL_KAFKA_PARTITIONS=4",
		"SECKILL_LIMIT_MAX_IN_FLIGHT=16384",
		"SECKILL_CLAIM_TIMEOUT=" + opt.claimTimeout.String(),
	}
	for k, v := range c.sc.env {
		extra = append(extra, k+"="+v)
	}
	return e.Environ(extra...)
}

var probe = &http.Client{Timeout: 2 * time.Second}

func getStatus(url string) (int, error) { return harness.Status(probe, url) }

// startApp starts instance a and waits for GET /readyz 200.
func (c *cluster) startApp(a *app) error {
	p, err := c.start(fmt.Sprintf("app%d", a.idx), c.appEnv(a), bins.Seckill, "serve")
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.p = p
	a.mu.Unlock()
	return c.waitReady(a, 60*time.Second)
}

func (c *cluster) waitReady(a *app, d time.Duration) error {
	return harness.WaitReady(context.Background(), a.proc(), probe, a.url, d)
}

// ---------------------------------------------------------------- setup

func newCluster(sc *scenario, idx int, root string) (*cluster, error) {
	base := opt.portBase + idx*10
	c := &cluster{sc: sc, t0: time.Now(),
		admin:     "faults-admin-" + harness.RandHex(12),
		secret:    "faults-jwt-secret-" + harness.RandHex(24),
		redisPort: base, replicaPort: base + 1, proxyPort: base + 2, mysqlPort: base + 3, kafkaPort: base + 4,
		mysqlProxyPort: base + 7, kafkaProxyPort: base + 8,
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
	if err := harness.PortsFree("use -port-base / -cluster-port-base", ports...); err != nil {
		return nil, err
	}
	var err error
	if c.dir, err = harness.Mkdir(root, sc.name); err != nil {
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
		d, err := harness.Mkdir(c.dir, "replica-data")
		if err != nil {
			return c, err
		}
		c.replica, err = c.startRedis("replica", c.replicaPort, d, "always", harness.Addr(c.redisPort))
		if err != nil {
			return c, err
		}
		err = harness.WaitFor(context.Background(), 20*time.Second, 100*time.Millisecond, "replica link up", func() (bool, error) {
			v, err := redisDo(harness.Addr(c.replicaPort), "INFO", "replication")
			s, _ := v.(string)
			return strings.Contains(s, "master_link_status:up"), err
		})
		if err != nil {
			return c, err
		}
		if c.px, err = newProxy(harness.Addr(c.proxyPort), harness.Addr(c.redisPort)); err != nil {
			return c, err
		}
	}
	if sc.stall > 0 {
		// The apps reach all three servers through proxies the scenario
		// can partition; the suite itself talks to them directly.
		if c.px, err = newProxy(harness.Addr(c.proxyPort), harness.Addr(c.redisPort)); err != nil {
			return c, err
		}
		if c.mpx, err = newProxy(harness.Addr(c.mysqlProxyPort), harness.Addr(c.mysqlPort)); err != nil {
			return c, err
		}
		if c.kpx, err = newProxy(harness.Addr(c.kafkaProxyPort), harness.Addr(c.kafkaPort)); err != nil {
			return c, err
		}
	}
	c.mysqlDir = filepath.Join(c.dir, "mysql-data")
	if err := harness.CopyTemplate(bins.MySQLTemplate, c.mysqlDir); err != nil {
		return c, err
	}
	if err := c.startMySQL(); err != nil {
		return c, err
	}
	if c.db, err = sql.Open("mysql", harness.DSN(c.mysqlPort, "seckill", "parseTime=true&timeout=1s&readTimeout=5s")); err != nil {
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
	var ps []*harness.Proc
	for _, a := range c.apps {
		if p := a.proc(); p != nil {
			ps = append(ps, p)
			if dump && p.Alive() {
				p.Expect()
				_ = p.Signal(syscall.SIGCONT)
				_ = p.Signal(syscall.SIGQUIT)
			}
		}
	}
	if dump {
		for _, p := range ps {
			p.Wait(5 * time.Second)
		}
	}
	ps = append(ps, c.replica, c.redis, c.kafka, c.mysql)
	if c.rc != nil {
		for _, n := range c.rc.nodes {
			ps = append(ps, n.p)
		}
	}
	for _, p := range ps {
		if p != nil && p.Alive() {
			p.Expect()
			_ = p.Signal(syscall.SIGCONT)
			p.Kill9()
		}
	}
	for _, px := range []*proxy{c.px, c.mpx, c.kpx} {
		if px != nil {
			px.close()
		}
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
