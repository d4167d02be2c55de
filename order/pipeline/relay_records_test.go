package pipeline_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"seckill/app/testenv"
	"seckill/order/pipeline"
	"seckill/stock"
)

// syncBuffer is a log sink safe for the relay's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestRelayBrokenEntryLoggedAndCounted: an outbox entry that is not a
// reservation is not published, and it is no longer dropped in silence:
// it is logged with its stream and id, and counted, once, although the
// relay meets it again each time it takes it over (after ClaimIdle).
func TestRelayBrokenEntryLoggedAndCounted(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	st := stock.NewStore(rdb, stock.Config{Prefix: prefix})
	brokers := testenv.Kafka(t)
	topic := testenv.Topic("orders")
	relayTopic(t, brokers, topic, 1)
	const item, shards = 41, 1
	want := relayReserve(t, st, item, shards, 3)
	ctx := context.Background()
	o := stock.OutboxOf(item, 0, shards)
	key := st.OutboxKey(o)
	id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{"o", "12", "i", item}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	const claimIdle = 50 * time.Millisecond
	r, err := pipeline.NewRelay(st, relayProducer(t, brokers), pipeline.RelayConfig{
		Topic: topic, Consumer: "r1", ClaimIdle: claimIdle, Shards: fixedShards(shards),
	}, reg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.DrainOnce(ctx); err != nil || n != len(want) {
		t.Fatalf("DrainOnce: got %d, %v; want %d, nil", n, err, len(want))
	}
	// Met again: taken over once idle for ClaimIdle (delivered twice).
	eventually(t, 10*time.Second, "broken entry taken over", func() bool {
		if _, err := r.DrainOnce(ctx); err != nil {
			t.Fatalf("DrainOnce: %v", err)
		}
		p, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: key, Group: pipeline.RelayGroup, Start: id, End: id, Count: 1}).Result()
		return err == nil && len(p) == 1 && p[0].RetryCount >= 2
	})
	if got := metricValue(t, reg, "seckill_outbox_broken_entries_total"); got != 1 {
		t.Errorf("seckill_outbox_broken_entries_total: got %v, want 1", got)
	}
	var lines []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, id) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], key) || !strings.Contains(lines[0], "level=ERROR") {
		t.Errorf("log lines naming entry %s: got %q, want one error naming stream %s", id, lines, key)
	}
	if seen := publishedOrders(t, brokers, topic); len(seen) != len(want) || seen[12] != 0 {
		t.Errorf("published: got %v, want only the %d reservations", seen, len(want))
	}
}

// TestRelayRestartsKeepConsumersBounded: every relay start names a new
// consumer in each outbox's group; a relay removes those of earlier relays
// once they are idle for ClaimIdle with nothing pending (it took their
// pending entries over first), so restarts do not pile them up.
func TestRelayRestartsKeepConsumersBounded(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	st := stock.NewStore(rdb, stock.Config{Prefix: prefix})
	brokers := testenv.Kafka(t)
	topic := testenv.Topic("orders")
	relayTopic(t, brokers, topic, 1)
	const item, shards, restarts = 42, 1, 8
	relayReserve(t, st, item, shards, 5)
	ctx := context.Background()
	key := st.OutboxKey(stock.OutboxOf(item, 0, shards))
	producer := relayProducer(t, brokers)
	const claimIdle = 50 * time.Millisecond
	consumers := func() map[string]redis.XInfoConsumer {
		cs, err := rdb.XInfoConsumers(ctx, key, pipeline.RelayGroup).Result()
		if err != nil {
			t.Fatalf("xinfo consumers: %v", err)
		}
		out := map[string]redis.XInfoConsumer{}
		for _, c := range cs {
			out[c.Name] = c
		}
		return out
	}
	most := 0
	for i := range restarts {
		name := "relay-" + string(rune('a'+i))
		r, _ := relayNew(t, st, producer, pipeline.RelayConfig{
			Topic: topic, Consumer: name, ClaimIdle: claimIdle, Shards: fixedShards(shards),
		})
		if _, err := r.DrainOnce(ctx); err != nil {
			t.Fatalf("restart %d: DrainOnce: %v", i, err)
		}
		cs := consumers()
		if _, ok := cs[name]; !ok {
			t.Fatalf("restart %d: consumer %s not in the group: %v", i, name, cs)
		}
		most = max(most, len(cs))
		// The relay "dies": wait until its consumer sat idle for ClaimIdle.
		eventually(t, 10*time.Second, "consumer idle", func() bool {
			return consumers()[name].Idle >= claimIdle
		})
	}
	if most > 2 {
		t.Errorf("consumers in the group after %d restarts: up to %d, want at most 2 (the live relay and the one before)", restarts, most)
	}
	var pending int64
	for _, c := range consumers() {
		pending += c.Pending
	}
	if pending != 5 {
		t.Errorf("pending entries: got %d, want all 5 still pending (none lost with a consumer)", pending)
	}
}
