package app_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"seckill/app"
	"seckill/app/apptest"
	"seckill/app/testenv"
)

// TestKafkaBlipAfterTheProducerKeepsServing: Kafka takes the producer,
// then refuses the next metadata requests (the consumer group's step) for
// a while. The instance keeps serving, retries the whole Kafka connection,
// and the purchases it accepted meanwhile land. Before, the consumer
// group's failure stopped the instance, HTTP included.
func TestKafkaBlipAfterTheProducerKeepsServing(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	const refusals = 12 // more than one client's metadata retries (4)
	var armed atomic.Bool
	var refused atomic.Int64
	c.ControlKey(int16(kmsg.InitProducerID), func(kmsg.Request) (kmsg.Response, error, bool) {
		armed.Store(true) // the producer is made: refuse what comes next
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.Metadata), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !armed.Load() {
			return nil, nil, false
		}
		if refused.Add(1) > refusals {
			c.DropControl()
			return nil, nil, false
		}
		return nil, errors.New("test: refused"), true // closes the connection
	})
	a := startApp(t, map[string]string{"SECKILL_KAFKA_BROKERS": strings.Join(c.ListenAddrs(), ",")})
	stopped := make(chan struct{})
	go func() { defer close(stopped); a.Server.Wait() }() // ends with the app
	deadline := time.Now().Add(30 * time.Second)
	for refused.Load() <= refusals && time.Now().Before(deadline) {
		select {
		case <-stopped:
			t.Fatalf("the app stopped after kafka refused %d requests", refused.Load())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if refused.Load() <= refusals {
		t.Fatalf("kafka refused %d metadata requests in 30s, want > %d", refused.Load(), refusals)
	}
	it := a.createItem(map[string]any{"name": "kafka-blip", "price_minor": 1000, "currency": "EUR", "stock": 5, "shards": 2})
	accepted := a.race(it.ID, 5, 700_000)
	if len(accepted) != 5 {
		t.Fatalf("accepted %d after a kafka blip, want 5", len(accepted))
	}
	a.checkOrders(it.ID, accepted, 5)
	if !strings.Contains(a.Log.String(), "kafka not reachable") {
		t.Errorf("no warning about kafka in the log:\n%s", a.Log)
	}
}

// TestFailedStartReleasesTheNodeLease: a Start that fails after leasing a
// node id (here the HTTP port is taken) gives the id back at once rather
// than holding it until its TTL runs out.
func TestFailedStartReleasesTheNodeLease(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	dsn, _ := testenv.MySQL(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	vars := map[string]string{
		"SECKILL_HTTP_ADDR":     taken.Addr().String(),
		"SECKILL_REDIS_PREFIX":  prefix,
		"SECKILL_MYSQL_DSN":     dsn,
		"SECKILL_ADMIN_TOKEN":   apptest.AdminToken,
		"SECKILL_JWT_SECRET":    apptest.JWTSecret,
		"SECKILL_PURCHASE_KEY":  apptest.PurchaseKey,
		"SECKILL_KAFKA_BROKERS": strings.Join(testenv.Kafka(t), ","),
	}
	for k, v := range testenv.RedisEnv() {
		vars[k] = v
	}
	cfg, err := app.LoadConfig(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	s, err := app.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		s.Wait()
		t.Fatal("Start on a taken port: got nil error")
	}
	if keys := testenv.Keys(context.Background(), rdb, prefix+":node:*"); len(keys) > 0 {
		t.Errorf("node id lease still held after a failed start: %v", keys)
	}
}
