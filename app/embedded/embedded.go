// Package embedded starts in-process stand-ins for Redis, Kafka and MySQL for
// `seckill dev`. Each one speaks the real wire protocol on a free port of
// 127.0.0.1, so the app reaches them through go-redis, sarama and
// go-sql-driver/mysql exactly as it reaches the real servers: dev mode runs
// the production code path. All state is in memory and lost on stop.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/memory"
	"github.com/dolthub/go-mysql-server/server"
	"github.com/dolthub/go-mysql-server/sql"
	wire "github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Redis starts github.com/alicebob/miniredis/v2 on 127.0.0.1:<free port>.
// Keys expire against the wall clock, as on a real Redis (miniredis only
// does that with ClockTTL; by default TTLs never run down).
func Redis() (addr string, stop func(), err error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return "", nil, fmt.Errorf("start embedded redis: %w", err)
	}
	m.ClockTTL(true)
	// miniredis.Close is a no-op once closed, but Once keeps the promise
	// independent of that detail.
	var once sync.Once
	return m.Addr(), func() { once.Do(m.Close) }, nil
}

// Kafka starts github.com/twmb/franz-go/pkg/kfake with one broker on
// 127.0.0.1:<free port> and returns its bootstrap address. Topics are not
// auto-created: create them explicitly (the app does, via ClusterAdmin).
// Group session timeouts down to 100ms are accepted, so consumers in dev and
// tests notice a dead member quickly.
func Kafka() (brokers []string, stop func(), err error) {
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.GroupMinSessionTimeout(100*time.Millisecond),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("start embedded kafka: %w", err)
	}
	// kfake.Cluster.Close is idempotent itself; Once makes it explicit.
	var once sync.Once
	return c.ListenAddrs(), func() { once.Do(c.Close) }, nil
}

// MySQL starts github.com/dolthub/go-mysql-server with an empty in-memory
// database named db on 127.0.0.1:<free port>, accepting user root with no
// password, and returns a go-sql-driver DSN for it:
// "root@tcp(127.0.0.1:PORT)/db?parseTime=true". Apply the schema with
// migrations.Up as against a real server.
//
// Transactions run one at a time (see gate): the in-memory engine commits a
// transaction by writing back whole tables, so two concurrent ones would
// silently lose each other's rows. A statement that waits longer than
// lockWait for its turn fails with MySQL error 1205 (lock wait timeout), as
// InnoDB's row locks do, and callers that retry 1205 retry it.
func MySQL(db string) (dsn string, stop func(), err error) {
	return startMySQL(db, lockWait)
}

// startMySQL is MySQL with the lock wait timeout as a parameter.
func startMySQL(db string, wait time.Duration) (dsn string, stop func(), err error) {
	if db == "" {
		return "", nil, errors.New("start embedded mysql: empty database name")
	}
	mdb := memory.NewDatabase(db)
	// Without this, primary keys are not used as indexes: every lookup by
	// order_id would scan the table.
	mdb.BaseDatabase.EnablePrimaryKeyIndexes()
	pro := memory.NewDBProvider(mdb)
	engine := sqle.NewDefault(pro)

	// Our own listener: the port is chosen and held by the kernel, with no
	// probe-then-bind race, and closing it releases the port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		engine.Close()
		return "", nil, fmt.Errorf("start embedded mysql: listen: %w", err)
	}
	g := newGate(wait)
	srv, err := server.NewServerWithHandler(server.Config{
		Protocol: "tcp",
		Address:  ln.Addr().String(),
		Listener: ln,
	}, engine, sql.NewContext, memory.NewSessionBuilder(pro), nil,
		func(h wire.Handler) (wire.Handler, error) { return &gatedHandler{Handler: h, gate: g}, nil })
	if err != nil {
		ln.Close()
		engine.Close()
		return "", nil, fmt.Errorf("start embedded mysql: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Start() // accepts until Close; always returns nil
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			srv.Close()
			<-done // the accept loop is gone, so the port is free
			engine.Close()
		})
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return fmt.Sprintf("root@tcp(127.0.0.1:%d)/%s?parseTime=true", port, db), stop, nil
}

// lockWait is how long a statement waits for another connection's
// transaction to finish before failing with error 1205.
const lockWait = 10 * time.Second

// gate lets one connection at a time run statements, from its first
// statement until its transaction ends: a global lock with serializable
// isolation, which is what the memory engine needs to be correct. sem holds
// the one slot; holder is the connection in it.
type gate struct {
	sem  chan struct{}
	wait time.Duration

	mu     sync.Mutex
	holder *wire.Conn
}

func newGate(wait time.Duration) *gate {
	return &gate{sem: make(chan struct{}, 1), wait: wait}
}

// enter blocks until c holds the gate (at once if it already does).
func (g *gate) enter(ctx context.Context, c *wire.Conn) error {
	g.mu.Lock()
	held := g.holder == c
	g.mu.Unlock()
	if held {
		return nil
	}
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case g.sem <- struct{}{}:
	case <-t.C:
		return wire.NewSQLError(wire.ERLockWaitTimeout, "HY000", "Lock wait timeout exceeded; try restarting transaction")
	case <-ctx.Done():
		return ctx.Err()
	}
	g.mu.Lock()
	g.holder = c
	g.mu.Unlock()
	return nil
}

// leave releases the gate if c holds it and is not inside a transaction any
// more (or always, if force: the connection is gone or was reset). The
// handler updates c.StatusFlags after every statement, on this goroutine.
func (g *gate) leave(c *wire.Conn, force bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.holder != c {
		return
	}
	if !force && c.StatusFlags&wire.ServerInTransaction != 0 {
		return // BEGIN ... still open: keep others out until COMMIT/ROLLBACK
	}
	g.holder = nil
	<-g.sem
}

// gatedHandler runs every statement of the wrapped handler inside the gate.
type gatedHandler struct {
	wire.Handler
	gate *gate
}

func (h *gatedHandler) ComQuery(ctx context.Context, c *wire.Conn, query string, cb wire.ResultSpoolFn) error {
	if err := h.gate.enter(ctx, c); err != nil {
		return err
	}
	defer h.gate.leave(c, false)
	return h.Handler.ComQuery(ctx, c, query, cb)
}

func (h *gatedHandler) ComMultiQuery(ctx context.Context, c *wire.Conn, query string, cb wire.ResultSpoolFn) (string, error) {
	if err := h.gate.enter(ctx, c); err != nil {
		return "", err
	}
	defer h.gate.leave(c, false)
	return h.Handler.ComMultiQuery(ctx, c, query, cb)
}

func (h *gatedHandler) ComPrepare(ctx context.Context, c *wire.Conn, query string, p *wire.PrepareData) ([]*querypb.Field, error) {
	if err := h.gate.enter(ctx, c); err != nil {
		return nil, err
	}
	defer h.gate.leave(c, false)
	return h.Handler.ComPrepare(ctx, c, query, p)
}

func (h *gatedHandler) ComStmtExecute(ctx context.Context, c *wire.Conn, p *wire.PrepareData, cb func(*sqltypes.Result) error) error {
	if err := h.gate.enter(ctx, c); err != nil {
		return err
	}
	defer h.gate.leave(c, false)
	return h.Handler.ComStmtExecute(ctx, c, p, cb)
}

func (h *gatedHandler) ComResetConnection(c *wire.Conn) error {
	// A reset rolls back any open transaction.
	defer h.gate.leave(c, true)
	return h.Handler.ComResetConnection(c)
}

func (h *gatedHandler) ConnectionClosed(c *wire.Conn) {
	// A dropped connection's transaction is gone; never keep the gate.
	defer h.gate.leave(c, true)
	h.Handler.ConnectionClosed(c)
}
