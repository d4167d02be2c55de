package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"seckill/order/lifecycle"
	"seckill/order/pipeline"
	"strconv"
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
	"seckill/migrations"
	"seckill/mq"
	"seckill/order"
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
	// owner names this instance (leases, heartbeats); lossSeen is when it
	// first saw the pending Redis loss (unix ns).
	owner    string
	lossSeen atomic.Int64
	// runID is the Redis run id last seen (rebuildLost's loop only), and
	// runIDAt when.
	runID   string
	runIDAt time.Time
	// checkNow wakes the loss watcher at once (Redis restarted).
	checkNow chan struct{}
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
// applies the migrations.
func openMySQL(ctx context.Context, cfg Config) (*sqlx.DB, error) {
	mc, err := mysql.ParseDSN(cfg.MySQL.DSN)
	if err != nil {
		return nil, fmt.Errorf("mysql dsn: %w", err)
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
	db, err := sqlx.Open("mysql", mc.FormatDSN())
	if err != nil {
		return nil, err
	}
	if cfg.MySQL.MaxOpenConns > 0 {
		db.SetMaxOpenConns(cfg.MySQL.MaxOpenConns)
		db.SetMaxIdleConns(cfg.MySQL.MaxOpenConns)
	}
	if err := migrations.Up(ctx, db.DB); err != nil {
		db.Close()
		return nil, err
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
	owner := hostname() + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	s.owner = owner

	// Redis: stock calls fail closed after the configured timeout.
	rdb := newRedis(cfg)
	s.onClose(func() { rdb.Close() })
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := stock.NewStore(rdb, stock.Config{Prefix: cfg.Redis.Prefix}).Ping(pctx); err != nil {
		return nil, fmt.Errorf("redis %s: %w", cfg.Redis.Addr, err)
	}
	db, err := openMySQL(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.onClose(func() { db.Close() })

	reg := prometheus.NewRegistry()
	if err := errors.Join(reg.Register(collectors.NewGoCollector()),
		reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))); err != nil {
		return nil, err
	}
	calls, err := newRedisCalls(reg)
	if err != nil {
		return nil, err
	}
	rdb.AddHook(calls)

	node, err := leaseNode(ctx, rdb, cfg.Redis.Prefix, 30*time.Second)
	if err != nil {
		return nil, err
	}
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
		return nil, err
	}
	s.journal = journal
	s.Orders = order.NewStore(db)
	lim, err := limiter.New(limiter.Config{
		GlobalRate: cfg.Limiter.GlobalRate, GlobalBurst: cfg.Limiter.GlobalBurst,
		UserRate: cfg.Limiter.UserRate, UserBurst: cfg.Limiter.UserBurst,
		MaxInFlight: cfg.Limiter.MaxInFlight, AcquireWait: cfg.Limiter.AcquireWait,
	}, reg)
	if err != nil {
		return nil, err
	}
	s.onClose(lim.Close)

	shards := func(ctx context.Context, itemID int64) (int, error) {
		it, err := s.Orders.Item(ctx, itemID)
		return it.Shards, err
	}
	parts, err := s.lifecycle(reg)
	if err != nil {
		return nil, err
	}
	h, err := handler.New(handler.Deps{
		Stock: s.Stock, Orders: s.Orders, Limiter: lim, IDs: node,
		AdminToken: cfg.Auth.AdminToken, JWTSecret: cfg.Auth.JWTSecret, Log: log, Registry: reg,
		Ledger: parts.ledger, Journal: journal, MetricsElsewhere: cfg.Metrics.Addr != "",
		Ready: func(ctx context.Context) error {
			return errors.Join(s.Stock.Ping(ctx), s.Orders.Ping(ctx))
		},
	})
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
	g.Go(func() error { return node.keep(gctx, log) })
	g.Go(func() error { return s.runKafka(gctx, reg, owner, shards) })
	parts.start(g, gctx)

	go func() {
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
		sctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.ShutdownTimeout)
		if err := errors.Join(srv.Shutdown(sctx), msrv.shutdown(sctx)); err != nil {
			log.Error("http shutdown", "err", err)
		}
		cancel()
		stopWorkers()
		if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) && s.err == nil {
			s.err = err
		}
		s.closeAll()
	}()
	return s, nil
}

// runKafka connects to Kafka (retrying while it is down: purchases keep
// landing in the outboxes meanwhile), then runs the relay and the consumers
// until ctx ends. It flushes the producer before closing it.
func (s *Server) runKafka(ctx context.Context, reg prometheus.Registerer, owner string, shards func(context.Context, int64) (int, error)) error {
	cfg := s.cfg
	pcfg := mq.ProducerConfig("seckill-" + owner)
	topics := map[string]int32{cfg.Kafka.Topic: cfg.Kafka.Partitions, cfg.Kafka.DLQTopic: 1}
	// connect makes sure the topics exist (a broker that came back without
	// its data has none) and opens a producer.
	connect := func(ctx context.Context) (sarama.SyncProducer, error) {
		if err := mq.EnsureTopics(ctx, cfg.Kafka.Brokers, pcfg, topics); err != nil {
			return nil, err
		}
		return sarama.NewSyncProducer(cfg.Kafka.Brokers, pcfg)
	}
	var producer sarama.SyncProducer
	for attempt := 0; ; attempt++ {
		var err error
		if producer, err = connect(ctx); err == nil {
			break
		}
		s.log.Warn("kafka not reachable; purchases stay in the outbox", "err", err, "attempt", attempt)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(min(time.Duration(attempt+1)*500*time.Millisecond, 5*time.Second)):
		}
	}

	relay, err := pipeline.NewRelay(s.Stock, producer, pipeline.RelayConfig{
		Topic: cfg.Kafka.Topic, Consumer: owner, BatchSize: cfg.Relay.BatchSize, ClaimIdle: cfg.Relay.ClaimIdle, Linger: relayLinger(cfg.Relay.Linger), Shards: shards,
		Renew: connect,
	}, reg, s.log)
	if err != nil {
		producer.Close()
		return err
	}
	// The relay may have renewed its producer: close the one it has.
	defer func() { relay.Producer().Close() }()
	writer, err := pipeline.NewWriter(s.Orders, pipeline.WriterConfig{
		BatchSize: cfg.Consumer.BatchSize, BatchWait: cfg.Consumer.BatchWait, OrderTTL: cfg.Order.TTL,
		Ack: func(ctx context.Context, entries []stock.Entry) error {
			return s.Stock.AckEntries(ctx, pipeline.RelayGroup, entries)
		},
	}, reg, s.log)
	if err != nil {
		return err
	}
	group, err := sarama.NewConsumerGroup(cfg.Kafka.Brokers, cfg.Kafka.Group, mq.ConsumerConfig("seckill-"+owner, cfg.Kafka.SessionTimeout))
	if err != nil {
		return fmt.Errorf("kafka consumer group: %w", err)
	}
	defer group.Close()
	// The writer's lag tells a rebuild when no reservation is left in Kafka.
	client, err := sarama.NewClient(cfg.Kafka.Brokers, mq.ConsumerConfig("seckill-lag-"+owner, cfg.Kafka.SessionTimeout))
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		client.Close()
		return fmt.Errorf("kafka admin: %w", err)
	}
	defer admin.Close() // closes client too
	lag := func() (int64, error) { return mq.Lag(admin, client, cfg.Kafka.Group, cfg.Kafka.Topic) }
	s.lag.Store(&lag)
	defer s.lag.Store(nil)

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); relay.Run(ctx) }()
	go func() { defer wg.Done(); mq.RunGroup(ctx, group, []string{cfg.Kafka.Topic}, writer, s.log) }()
	wg.Wait()
	return nil
}

func serve(ctx context.Context, cfg Config, stdout io.Writer, started func(*Server)) error {
	log := newLogger(stdout, cfg.Log.Level)
	log.Info("starting seckill", "config", cfg.String())
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
// the slot map). Stock calls fail closed after the configured timeout.
func newRedis(cfg Config) redis.UniversalClient {
	if cfg.Redis.Mode == RedisCluster {
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: cfg.RedisAddrs(), PoolSize: cfg.Redis.PoolSize,
			ReadTimeout: cfg.Redis.Timeout, WriteTimeout: cfg.Redis.Timeout, DialTimeout: 2 * time.Second,
			ContextTimeoutEnabled: true, MaxRetries: 1,
		})
	}
	return redis.NewClient(&redis.Options{
		Addr: cfg.Redis.Addr, PoolSize: cfg.Redis.PoolSize,
		ReadTimeout: cfg.Redis.Timeout, WriteTimeout: cfg.Redis.Timeout, DialTimeout: 2 * time.Second,
		ContextTimeoutEnabled: true, MaxRetries: 1,
	})
}

// relayLinger is the relay's Linger for the configured relay.linger: 0 in
// the configuration turns lingering off.
func relayLinger(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
