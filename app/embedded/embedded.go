// Package embedded starts in-process stand-ins for Redis, Kafka and MySQL for
// `seckill dev`. Each one speaks the real wire protocol on a free port of
// 127.0.0.1, so the app reaches them through go-redis, sarama and
// go-sql-driver/mysql exactly as it reaches the real servers: dev mode runs
// the production code path. All state is in memory and lost on stop.
package embedded

import (
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
func MySQL(db string) (dsn string, stop func(), err error) {
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
	srv, err := server.NewServer(server.Config{
		Protocol: "tcp",
		Address:  ln.Addr().String(),
		Listener: ln,
	}, engine, sql.NewContext, memory.NewSessionBuilder(pro), nil)
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
