package app

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"seckill/order/lifecycle"
	"seckill/order/orderid"
	"seckill/order/pipeline"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"seckill/handler"
	"seckill/limiter"
	"seckill/limiter/breaker"
	"seckill/migrations"
	"seckill/mq"
	"seckill/order"
	"seckill/order/sale"
	"seckill/stock"
)

// Server is a running seckill instance.
type Server struct {
	// Addr is the address the HTTP server listens on.
	Addr string
	// MetricsAddr is where /metrics is served when metrics.addr is set.
	MetricsAddr string
	// Stock and Orders are exposed for the dev command and tests.
	Stock  *stock.Store
	Orders *order.Store

	cfg     Config
	log     *slog.Logger
	started time.Time
	// lag reads the order writer's consumer lag once Kafka is connected.
	lag     atomic.Pointer[func() (int64, error)]
	journal *lifecycle.Journal
	// owner names this instance (leases, heartbeats).
	owner string
	// checkNow wakes the loss watcher at once (Redis restarted).
	checkNow chan struct{}
	// breakers guard Redis, MySQL and the Kafka producer.
	breakers *breaker.Set
	done     chan struct{}
	err      error
	closers  []func() // run in reverse order at the end
}

// Wait blocks until the server stopped (its ctx was cancelled, or a part
// failed) and everything was closed, and returns why it stopped.
func (s *Server) Wait() error {
	<-s.done
	return s.err
}

func (s *Server) onClose(f func()) { s.closers = append(s.closers, f) }

func (s *Server) closeAll() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// backends replaces every "embedded" address with an in-process server; a
// binary built with -tags nodev has none and refuses them all at once.
func (s *Server) backends() error {
	cfg := &s.cfg
	if names := embeddedIn(*cfg); !standIns && len(names) > 0 {
		return errNoStandIns(names)
	}
	if cfg.Redis.Addr == Embedded {
		addr, stop, err := embeddedRedis()
		if err != nil {
			return err
		}
		s.onClose(stop)
		cfg.Redis.Addr = addr
	}
	if cfg.MySQL.DSN == Embedded {
		dsn, stop, err := embeddedMySQL("seckill")
		if err != nil {
			return err
		}
		s.onClose(stop)
		cfg.MySQL.DSN = dsn
		// It has no row locks: one connection makes every conditional
		// update (pay, cancel, the stock guard) atomic.
		cfg.MySQL.MaxOpenConns = 1
	}
	if len(cfg.Kafka.Brokers) == 1 && cfg.Kafka.Brokers[0] == Embedded {
		brokers, stop, err := embeddedKafka()
		if err != nil {
			return err
		}
		s.onClose(stop)
		cfg.Kafka.Brokers = brokers
	}
	return nil
}

// openMySQL connects, creating the database if it does not exist, and
// applies the migrations. The connections it returns have the configured
// dial, read and write timeouts (unless the DSN sets its own) and, with b,
// a circuit breaker; the migrations run on a connection of their own
// without read timeout (a migration may take long).
func openMySQL(ctx context.Context, cfg Config, b *breaker.Breaker) (*sqlx.DB, error) {
	mc, err := mysql.ParseDSN(cfg.MySQL.DSN)
	if err != nil {
		return nil, fmt.Errorf("mysql dsn: %w", err)
	}
	if mc.Timeout == 0 {
		mc.Timeout = cfg.MySQL.DialTimeout
	}
	mc.ParseTime = true
	mc.Loc = time.UTC
	// Arguments are put into the statement by the driver: one round trip
	// per statement, where a server-side prepared statement costs a
	// prepare, an execute and a close each time (database/sql prepares
	// every call with arguments on a fresh statement). The driver refuses
	// it for character sets where escaping is not safe.
	mc.InterpolateParams = true
	if mc.DBName != "" {
		name := mc.DBName
		mc.DBName = ""
		root, err := sqlx.Open("mysql", mc.FormatDSN())
		if err != nil {
			return nil, err
		}
		_, err = root.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+name+"`")
		root.Close()
		if err != nil {
			return nil, fmt.Errorf("create database %s: %w", name, err)
		}
		mc.DBName = name
	}
	mig, err := sqlx.Open("mysql", mc.FormatDSN())
	if err != nil {
		return nil, err
	}
	err = migrations.Up(ctx, mig.DB)
	mig.Close()
	if err != nil {
		return nil, err
	}
	if mc.ReadTimeout == 0 {
		mc.ReadTimeout = cfg.MySQL.Timeout
	}
	if mc.WriteTimeout == 0 {
		mc.WriteTimeout = cfg.MySQL.Timeout
	}
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, err
	}
	db := sqlx.NewDb(sql.OpenDB(breaker.Connector(b, conn)), "mysql")
	if cfg.MySQL.MaxOpenConns > 0 {
		db.SetMaxOpenConns(cfg.MySQL.MaxOpenConns)
		db.SetMaxIdleConns(cfg.MySQL.MaxOpenConns)
	}
	return db, nil
}

// Start builds every part in dependency order and starts serving. The
// server runs until ctx is cancelled; Wait returns when it has stopped.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (_ *Server, err error) {
	s := &Server{cfg: cfg, log: log, done: make(chan struct{}), started: time.Now()}
	defer func() {
		if err != nil {
			s.closeAll()
		}
	}()
	if err := s.backends(); err != nil {
		return nil, err
	}
	cfg = s.cfg
	s.owner = hostname() + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	s.breakers = breaker.NewSet(breaker.Config{Failures: uint32(cfg.Breaker.Failures),
		OpenFor: cfg.Breaker.OpenFor, Probes: uint32(cfg.Breaker.Probes), Log: log})
	rdb, db, reg, err := s.open(ctx)
	if err != nil {
		return nil, err
	}

	node, err := orderid.Lease(ctx, rdb, orderid.Config{Prefix: cfg.Redis.Prefix, TTL: 30 * time.Second})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil { // give the id back now, not when its TTL ends
			_ = node.Release(context.WithoutCancel(ctx))
		}
	}()
	// Redis answers again: confirm the node id lease now, not at its next
	// refresh (ids stop while it is unconfirmed).
	s.breakers.OnChange(func(name string, _, to breaker.State) {
		if to == breaker.StateClosed && strings.HasPrefix(name, "redis") {
			node.Confirm()
		}
	})
	parts, h, err := s.build(rdb, db, reg, node)
	if err != nil {
		return nil, err
	}
	msrv, err := s.listenMetrics(h.MetricsHandler())
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.HTTP.Addr, err)
	}
	s.Addr = ln.Addr().String()
	srv := &http.Server{
		Handler: h.Routes(), ReadTimeout: cfg.HTTP.ReadTimeout, WriteTimeout: cfg.HTTP.WriteTimeout,
		IdleTimeout: cfg.HTTP.IdleTimeout, ReadHeaderTimeout: cfg.HTTP.ReadTimeout,
	}

	// Workers run until the HTTP server has drained, so a purchase in
	// flight at shutdown still has its outbox entry relayed by someone.
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	g, gctx := errgroup.WithContext(wctx)
	g.Go(func() error { return node.Keep(gctx, log) })
	g.Go(func() error { return s.runKafka(gctx, reg) })
	parts.start(g, gctx)
	go s.serve(ctx, srv, msrv, ln, g, gctx, stopWorkers)
	return s, nil
}

// open connects to Redis (a ping) and MySQL (migrated), and makes the
// metrics registry with the process collectors and the Redis call metrics.
func (s *Server) open(ctx context.Context) (redis.UniversalClient, *sqlx.DB, *prometheus.Registry, error) {
	cfg := s.cfg
	// Redis: stock calls fail closed after the configured timeout.
	rdb := newRedis(cfg, s.breakers)
	s.onClose(func() { rdb.Close() })
	s.onClose(s.breakers.Close) // runs first: waits for the breakers' probes
	if err := s.waitRedis(ctx, stock.NewStore(rdb, stock.Config{Prefix: cfg.Redis.Prefix})); err != nil {
		return nil, nil, nil, err
	}
	db, err := s.waitMySQL(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	s.onClose(func() { db.Close() })

	reg := prometheus.NewRegistry()
	if err := errors.Join(reg.Register(collectors.NewGoCollector()),
		reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})),
		reg.Register(s.breakers)); err != nil {
		return nil, nil, nil, err
	}
	calls, err := newRedisCalls(reg)
	if err != nil {
		return nil, nil, nil, err
	}
	rdb.AddHook(calls)
	return rdb, db, reg, nil
}

// waitRedis waits until Redis answers (every master of a cluster): one
// not up yet or still loading its data (LOADING) is waited for, with the
// log saying so, until ctx ends or redis.start_wait passed. Then it refuses
// a Redis that may evict keys (stock.ErrEvicting, naming the policy).
func (s *Server) waitRedis(ctx context.Context, st *stock.Store) error {
	cfg := s.cfg
	err := waitFor(ctx, cfg.Redis.StartWait, func(ctx context.Context) error {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return st.Ping(pctx)
	}, func(err error, attempt int, retry time.Duration) bool {
		what := "not reachable"
		if redis.IsLoadingError(err) {
			what = "loading"
		}
		s.log.Warn("waiting for redis: "+what, "addr", cfg.Redis.Addr, "err", err, "attempt", attempt, "retry_in", retry)
		return true
	})
	if err != nil {
		return fmt.Errorf("redis %s: %w", cfg.Redis.Addr, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return st.CheckNoEviction(pctx) // its errors name the server
}

// waitMySQL opens MySQL (openMySQL), waiting with the log saying so while
// the server is not reachable (a network error), until ctx ends or
// mysql.start_wait passed. Anything else (a refused login, a bad DSN, a
// failed migration) fails at once.
func (s *Server) waitMySQL(ctx context.Context) (*sqlx.DB, error) {
	var db *sqlx.DB
	err := waitFor(ctx, s.cfg.MySQL.StartWait, func(ctx context.Context) error {
		var err error
		db, err = openMySQL(ctx, s.cfg, s.breakers.Get("mysql"))
		return err
	}, func(err error, attempt int, retry time.Duration) bool {
		var ne net.Error
		if !errors.As(err, &ne) && !errors.Is(err, driver.ErrBadConn) && !errors.Is(err, mysql.ErrInvalidConn) &&
			!errors.Is(err, breaker.ErrOpen) {
			return false
		}
		s.log.Warn("waiting for mysql: not reachable", "err", err, "attempt", attempt, "retry_in", retry)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	return db, nil
}

// waitFor calls try until it succeeds, with a capped backoff between the
// attempts, for at most wait (and until ctx ends); retry says whether an
// error is worth another attempt (and logs it). The error is try's last,
// with how long it was waited for when that ran out.
func waitFor(ctx context.Context, wait time.Duration, try func(context.Context) error,
	retry func(err error, attempt int, in time.Duration) bool) error {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	start := time.Now()
	for attempt := 1; ; attempt++ {
		err := try(wctx)
		if err == nil {
			return nil
		}
		d := mq.Backoff(attempt, 100*time.Millisecond, 2*time.Second)
		if wctx.Err() != nil || !retry(err, attempt, d) {
			return waited(ctx, err, attempt, start)
		}
		t := time.NewTimer(d)
		select {
		case <-wctx.Done():
			t.Stop()
			return waited(ctx, err, attempt, start)
		case <-t.C:
		}
	}
}

func waited(ctx context.Context, err error, attempt int, start time.Time) error {
	if attempt == 1 || ctx.Err() != nil {
		return err
	}
	return fmt.Errorf("gave up after %v of waiting (start_wait): %w", time.Since(start).Round(time.Millisecond), err)
}

// build makes the stores, the journal, the limiter, the lifecycle parts
// and the HTTP handler.
func (s *Server) build(rdb redis.UniversalClient, db *sqlx.DB, reg *prometheus.Registry, ids sale.IDs) (*parts, *handler.Handler, error) {
	cfg := s.cfg
	s.checkNow = make(chan struct{}, 1)
	s.Stock = stock.NewStore(rdb, stock.Config{
		Prefix: cfg.Redis.Prefix, TokenTTL: cfg.Order.TokenTTL, ClaimTimeout: cfg.Order.ClaimTimeout,
		WaitReplicas: cfg.Redis.WaitReplicas, WaitTimeout: cfg.Redis.WaitTimeout,
		Restarted: func() {
			select {
			case s.checkNow <- struct{}{}:
			default:
			}
		},
	})
	journal, err := lifecycle.NewJournal(1<<18, reg)
	if err != nil {
		return nil, nil, err
	}
	s.journal = journal
	s.Orders = order.NewStore(db)
	lim, err := limiter.New(limiter.Config{
		GlobalRate: cfg.Limiter.GlobalRate, GlobalBurst: cfg.Limiter.GlobalBurst,
		UserRate: cfg.Limiter.UserRate, UserBurst: cfg.Limiter.UserBurst,
		MaxInFlight: cfg.Limiter.MaxInFlight, AcquireWait: cfg.Limiter.AcquireWait,
	}, reg)
	if err != nil {
		return nil, nil, err
	}
	s.onClose(lim.Close)

	parts, err := s.lifecycle(reg)
	if err != nil {
		return nil, nil, err
	}
	sl := sale.New(sale.Config{Stock: s.Stock, Orders: s.Orders, Limiter: lim, IDs: ids,
		Ledger: parts.ledger, Journal: journal, PageRefresh: cfg.Item.PageRefresh, Log: s.log})
	// Purchases stop while Redis may evict keys (checked at start too).
	parts.runners = append(parts.runners, func(ctx context.Context) error {
		return sl.WatchEviction(ctx, cfg.Redis.PolicyCheck, s.log)
	})
	h, err := handler.New(handler.Deps{
		Sale:       sl,
		AdminToken: cfg.Auth.AdminToken, JWTSecret: cfg.Auth.JWTSecret, Log: s.log, Registry: reg,
		MetricsElsewhere: cfg.Metrics.Addr != "",
		// /readyz: one named check per dependency.
		Checks: []handler.Check{
			{Name: "redis", Func: s.Stock.Ping},
			{Name: "mysql", Func: s.Orders.Ping},
			{Name: "redis-eviction-policy", Func: func(context.Context) error { return sl.Evicting() }},
		},
	})
	if err != nil {
		return nil, nil, err
	}
	return parts, h, nil
}

// itemShards is the shard count of an item, from MySQL (the relay's
// lookup).
func (s *Server) itemShards(ctx context.Context, itemID int64) (int, error) {
	it, err := s.Orders.Item(ctx, itemID)
	return it.Shards, err
}

// serve runs the HTTP server until ctx ends, a worker fails or the server
// fails; then it drains HTTP, stops the workers, waits for them, closes
// everything and marks the server done.
func (s *Server) serve(ctx context.Context, srv *http.Server, msrv *metricsServer, ln net.Listener, g *errgroup.Group, gctx context.Context, stopWorkers func()) {
	defer close(s.done)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	metricsErr := msrv.serve()
	select {
	case <-ctx.Done():
	case <-gctx.Done(): // a worker failed
	case err := <-serveErr:
		s.err = err
	case err := <-metricsErr:
		s.err = err
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.HTTP.ShutdownTimeout)
	if err := errors.Join(srv.Shutdown(sctx), msrv.shutdown(sctx)); err != nil {
		s.log.Error("http shutdown", "err", err)
	}
	cancel()
	stopWorkers()
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) && s.err == nil {
		s.err = err
	}
	s.closeAll()
}

// kafka is a connection to Kafka: a producer for the relay, the writer's
// consumer group, and a client with its admin for the writer's lag.
type kafka struct {
	producer sarama.SyncProducer
	group    sarama.ConsumerGroup
	client   sarama.Client
	admin    sarama.ClusterAdmin // closes client too
}

// close closes what was opened.
func (k *kafka) close() {
	if k.admin != nil {
		k.admin.Close()
	} else if k.client != nil {
		k.client.Close()
	}
	if k.group != nil {
		k.group.Close()
	}
	if k.producer != nil {
		k.producer.Close()
	}
}

// connectProducer makes sure the topics exist (a broker that came back
// without its data has none) and opens a producer; the relay also calls it
// to renew its producer.
func (s *Server) connectProducer(ctx context.Context) (sarama.SyncProducer, error) {
	cfg := s.cfg
	pcfg := mq.ProducerConfig("seckill-" + s.owner)
	topics := map[string]int32{cfg.Kafka.Topic: cfg.Kafka.Partitions}
	if err := mq.EnsureTopics(ctx, cfg.Kafka.Brokers, pcfg, topics); err != nil {
		return nil, err
	}
	p, err := sarama.NewSyncProducer(cfg.Kafka.Brokers, pcfg)
	return breaker.Producer(s.breakers.Get("kafka"), p), err
}

// connectKafka opens every Kafka part, as one step: a part that fails
// closes the ones opened before it.
func (s *Server) connectKafka(ctx context.Context) (_ *kafka, err error) {
	cfg := s.cfg
	k := &kafka{}
	defer func() {
		if err != nil {
			k.close()
		}
	}()
	if k.producer, err = s.connectProducer(ctx); err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	ccfg := mq.ConsumerConfig("seckill-"+s.owner, cfg.Kafka.SessionTimeout)
	if k.group, err = sarama.NewConsumerGroup(cfg.Kafka.Brokers, cfg.Kafka.Group, ccfg); err != nil {
		return nil, fmt.Errorf("kafka consumer group: %w", err)
	}
	// The writer's lag tells a rebuild when no reservation is left in Kafka.
	lcfg := mq.ConsumerConfig("seckill-lag-"+s.owner, cfg.Kafka.SessionTimeout)
	if k.client, err = sarama.NewClient(cfg.Kafka.Brokers, lcfg); err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	if k.admin, err = sarama.NewClusterAdminFromClient(k.client); err != nil {
		return nil, fmt.Errorf("kafka admin: %w", err)
	}
	return k, nil
}

// dialKafka connects to Kafka, retrying the whole connection with a
// capped backoff while Kafka is down or refuses a part; purchases stay in
// the outboxes meanwhile, and HTTP serves. It returns nil once ctx ended.
func (s *Server) dialKafka(ctx context.Context) *kafka {
	for attempt := 1; ; attempt++ {
		k, err := s.connectKafka(ctx)
		if err == nil {
			return k
		}
		d := mq.Backoff(attempt, 500*time.Millisecond, 5*time.Second)
		s.log.Warn("kafka not reachable; purchases stay in the outbox", "err", err, "attempt", attempt, "retry_in", d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// runKafka connects to Kafka (see dialKafka), then runs the relay, the
// writer and its consumer group until ctx ends. It flushes the producer
// before closing it.
func (s *Server) runKafka(ctx context.Context, reg prometheus.Registerer) error {
	cfg := s.cfg
	k := s.dialKafka(ctx)
	if k == nil {
		return nil
	}
	defer k.close()
	relay, err := pipeline.NewRelay(s.Stock, k.producer, pipeline.RelayConfig{
		Topic: cfg.Kafka.Topic, Consumer: s.owner, BatchSize: cfg.Relay.BatchSize, ClaimIdle: cfg.Relay.ClaimIdle, Linger: relayLinger(cfg.Relay.Linger), Shards: s.itemShards,
		Renew: s.connectProducer,
	}, reg, s.log)
	if err != nil {
		return err
	}
	// The relay may have renewed its producer: close the one it has.
	defer func() { k.producer = relay.Producer() }()
	writer, err := pipeline.NewWriter(s.Orders, pipeline.WriterConfig{
		BatchSize: cfg.Consumer.BatchSize, BatchWait: cfg.Consumer.BatchWait, OrderTTL: cfg.Order.TTL,
		Ack: func(ctx context.Context, entries []stock.Entry) error {
			return s.Stock.AckEntries(ctx, pipeline.RelayGroup, entries)
		},
	}, reg, s.log)
	if err != nil {
		return err
	}
	lag := func() (int64, error) { return mq.Lag(k.admin, k.client, cfg.Kafka.Group, cfg.Kafka.Topic) }
	s.lag.Store(&lag)
	defer s.lag.Store(nil)

	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); relay.Run(ctx) }()
	go func() { defer wg.Done(); mq.RunGroup(ctx, k.group, []string{cfg.Kafka.Topic}, writer, s.log) }()
	go func() { defer wg.Done(); writer.Run(ctx) }() // its acknowledgement retries
	wg.Wait()
	return nil
}

func serve(ctx context.Context, cfg Config, stdout io.Writer, started func(*Server)) error {
	log := newLogger(stdout, cfg.Log.Level)
	log.Info("starting seckill", "config", cfg.String())
	for _, d := range cfg.Deprecated() {
		log.Warn("config: " + d)
	}
	s, err := Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	log.Info("listening", "addr", s.Addr)
	if started != nil {
		started(s)
	}
	return s.Wait()
}

// newRedis is the Redis client of the configured mode: one server, or a
// Redis Cluster found from its seed nodes (go-redis follows MOVED/ASK and
// the slot map), guarded by a breaker per server ("redis", or
// "redis:<addr>" per cluster node).
//
// Time budget: redis.timeout bounds one call whole. Each of its parts
// (pool wait, dial, write, read) is capped by it, go-redis does not retry
// (MaxRetries -1: a retry of a timed-out call only doubles the wait, and
// go-redis retries a pool timeout too: with the old 1 retry and its
// default pool timeout of read timeout + 1 s, a stalled Redis held each
// answer 3 to 4 s) and dials once, and the hook's deadline covers the sum
// (ContextTimeoutEnabled makes go-redis honour it), a cluster's redirects
// included. Stock calls fail closed after it.
func newRedis(cfg Config, breakers *breaker.Set) redis.UniversalClient {
	t := cfg.Redis.Timeout
	if cfg.Redis.Mode == RedisCluster {
		c := redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: cfg.RedisAddrs(), PoolSize: cfg.Redis.PoolSize,
			ReadTimeout: t, WriteTimeout: t, DialTimeout: t, PoolTimeout: t, DialerRetries: 1,
			ContextTimeoutEnabled: true, MaxRetries: -1,
		})
		// Before any command, so every node's client has its breaker.
		c.OnNewNode(func(n *redis.Client) {
			n.AddHook(breaker.RedisHook(breakers.Get("redis:"+n.Options().Addr), t))
		})
		c.AddHook(breaker.RedisHook(nil, t))
		return c
	}
	c := redis.NewClient(&redis.Options{
		Addr: cfg.Redis.Addr, PoolSize: cfg.Redis.PoolSize,
		ReadTimeout: t, WriteTimeout: t, DialTimeout: t, PoolTimeout: t, DialerRetries: 1,
		ContextTimeoutEnabled: true, MaxRetries: -1,
	})
	c.AddHook(breaker.RedisHook(breakers.Get("redis"), t))
	return c
}

// relayLinger is the relay's Linger for the configured relay.linger: 0 in
// the configuration turns lingering off.
func relayLinger(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
