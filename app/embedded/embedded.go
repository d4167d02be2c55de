// Package embedded starts in-process stand-ins for Redis, Kafka and MySQL for
// `seckill dev`. Each one speaks the real wire protocol on a free port of
// 127.0.0.1, so the app reaches them through go-redis, sarama and
// go-sql-driver/mysql exactly as it reaches the real servers: dev mode runs
// the production code path. All state is in memory and lost on stop.
package embedded

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/alicebob/miniredis/v2/server"
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
	// It never evicts a key: it says so where the app asks (CONFIG GET
	// maxmemory-policy), which miniredis does not answer by itself.
	if err := m.Server().Register("CONFIG", configGet); err != nil {
		m.Close()
		return "", nil, fmt.Errorf("start embedded redis: %w", err)
	}
	// miniredis.Close is a no-op once closed, but Once keeps the promise
	// independent of that detail.
	var once sync.Once
	return m.Addr(), func() { once.Do(m.Close) }, nil
}

// configGet answers CONFIG GET maxmemory-policy (noeviction) and no other
// parameter, as a Redis does for a parameter it does not have.
func configGet(c *server.Peer, cmd string, args []string) {
	if len(args) != 2 || !strings.EqualFold(args[0], "GET") {
		c.WriteError("ERR only CONFIG GET is supported")
		return
	}
	if !strings.EqualFold(args[1], "maxmemory-policy") {
		c.WriteMapLen(0)
		return
	}
	c.WriteMapLen(1)
	c.WriteBulk("maxmemory-policy")
	c.WriteBulk("noeviction")
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
