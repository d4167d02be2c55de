package pipeline_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"seckill/order/pipeline"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"seckill/app/testenv"
	"seckill/mq"
	"seckill/stock"
)

// relayOrderTTL is the payment window the tests decode orders with.
const relayOrderTTL = 10 * time.Minute

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// relayStock returns a stock store on the test's own Redis prefix.
func relayStock(t *testing.T) *stock.Store {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	return stock.NewStore(rdb, stock.Config{Prefix: prefix})
}

// relayReserve warms an item with one unit per user and has every user buy
// one through the real Lua path; it returns the order ids, each of which
// now sits in one of the item's outboxes.
func relayReserve(t *testing.T, st *stock.Store, itemID int64, shards, users int) []int64 {
	t.Helper()
	ctx := context.Background()
	if err := st.Warm(ctx, itemID, int64(users), shards); err != nil {
		t.Fatalf("warm: %v", err)
	}
	ids := make([]int64, 0, users)
	for u := range users {
		userID := int64(1000 + u)
		tok := testenv.TokenID()
		orderID := stock.WithGroup((itemID*1_000_000+int64(u)+1)<<22, stock.HomeGroup(itemID, userID, shards))
		got, err := st.Reserve(ctx, stock.Purchase{ItemID: itemID, UserID: userID, Shards: shards, Limit: 1, Token: tok, OrderID: orderID})
		if err != nil {
			t.Fatalf("reserve for user %d: got %v, want nil", userID, err)
		}
		ids = append(ids, got)
	}
	return ids
}

// relayBacklog is the number of entries left in the item's outboxes.
func relayBacklog(t *testing.T, st *stock.Store, itemID int64, shards int) int64 {
	t.Helper()
	var sum int64
	for sh := range shards {
		n, err := st.OutboxLen(context.Background(), stock.OutboxOf(itemID, sh, shards))
		if err != nil {
			t.Fatalf("outbox len: %v", err)
		}
		sum += n
	}
	return sum
}

func relayProducer(t *testing.T, brokers []string) sarama.SyncProducer {
	t.Helper()
	p, err := sarama.NewSyncProducer(brokers, mq.ProducerConfig("test"))
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func relayTopic(t *testing.T, brokers []string, topic string, parts int32) {
	t.Helper()
	if err := mq.EnsureTopics(context.Background(), brokers, mq.ProducerConfig("test"), map[string]int32{topic: parts}); err != nil {
		t.Fatalf("ensure topics: %v", err)
	}
}

func relayNew(t *testing.T, st *stock.Store, p sarama.SyncProducer, cfg pipeline.RelayConfig) (*pipeline.Relay, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	r, err := pipeline.NewRelay(st, p, cfg, reg, quietLog())
	if err != nil {
		t.Fatalf("new relay: %v", err)
	}
	return r, reg
}

func fixedShards(n int) func(context.Context, int64) (int, error) {
	return func(context.Context, int64) (int, error) { return n, nil }
}

// readTopic returns every message in the topic, reading each partition
// from its start to its current end.
func readTopic(t *testing.T, brokers []string, topic string) []*sarama.ConsumerMessage {
	t.Helper()
	cfg := mq.ConsumerConfig("test-reader", 0)
	client, err := sarama.NewClient(brokers, cfg)
	if err != nil {
		t.Fatalf("reader client: %v", err)
	}
	defer client.Close()
	c, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatalf("reader: %v", err)
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	var out []*sarama.ConsumerMessage
	for _, p := range parts {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatalf("end of %s/%d: %v", topic, p, err)
		}
		if end == 0 {
			continue
		}
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("consume %s/%d: %v", topic, p, err)
		}
		timeout := time.After(10 * time.Second)
	read:
		for {
			select {
			case m := <-pc.Messages():
				out = append(out, m)
				if m.Offset >= end-1 {
					break read
				}
			case <-timeout:
				pc.Close()
				t.Fatalf("reading %s/%d: timed out before offset %d", topic, p, end-1)
			}
		}
		pc.Close()
	}
	return out
}

// publishedOrders counts each order id in the topic, checking that every
// message decodes and is keyed by its item.
func publishedOrders(t *testing.T, brokers []string, topic string) map[int64]int {
	t.Helper()
	seen := map[int64]int{}
	for _, m := range readTopic(t, brokers, topic) {
		o, err := pipeline.DecodeOrder(m.Value, relayOrderTTL)
		if err != nil {
			t.Fatalf("message at %d/%d: got %v, want a reservation", m.Partition, m.Offset, err)
		}
		if got, want := string(m.Key), strconv.FormatInt(o.ItemID, 10); got != want {
			t.Errorf("key of order %d: got %q, want %q", o.ID, got, want)
		}
		seen[o.ID]++
	}
	return seen
}

// metricValue is the value of a counter or gauge, or the sample count of a
// histogram, whose labels include the given pairs (summed over matches).
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// eventually polls cond every 20ms until it holds or d passed.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRelayPublishesAndAcks(t *testing.T) {
	tests := []struct {
		name          string
		items, shards int
		users         int
		batch         int64
	}{
		{"one shard", 1, 1, 20, 500},
		{"many shards small batches", 2, 4, 30, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := relayStock(t)
			brokers := testenv.Kafka(t)
			topic := testenv.Topic("orders")
			relayTopic(t, brokers, topic, 3)
			var want []int64
			for i := range tt.items {
				want = append(want, relayReserve(t, st, int64(i+1), tt.shards, tt.users)...)
			}
			r, reg := relayNew(t, st, relayProducer(t, brokers), pipeline.RelayConfig{
				Topic: topic, Consumer: "r1", BatchSize: tt.batch, Shards: fixedShards(tt.shards),
			})

			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			eventually(t, 15*time.Second, "all published", func() bool {
				return metricValue(t, reg, "seckill_relay_published_total") >= float64(len(want))
			})
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run after cancel: got %v, want nil", err)
			}

			seen := publishedOrders(t, brokers, topic)
			for _, id := range want {
				if seen[id] != 1 {
					t.Errorf("order %d in Kafka %d times, want 1", id, seen[id])
				}
			}
			if len(seen) != len(want) {
				t.Errorf("distinct orders in Kafka: got %d, want %d", len(seen), len(want))
			}
			// Sent, not stored: the outbox still holds every reservation, so
			// a broker that loses its data loses none of them.
			var held int64
			for i := range tt.items {
				held += relayBacklog(t, st, int64(i+1), tt.shards)
			}
			if held != int64(len(want)) {
				t.Errorf("outboxes hold %d reservations after publishing, want %d until the writer stores them", held, len(want))
			}
			if got := metricValue(t, reg, "seckill_relay_published_total"); got != float64(len(want)) {
				t.Errorf("published_total: got %v, want %d", got, len(want))
			}
			if got := metricValue(t, reg, "seckill_relay_errors_total"); got != 0 {
				t.Errorf("errors_total: got %v, want 0", got)
			}
			if got := metricValue(t, reg, "seckill_relay_publish_duration_seconds"); got < 1 {
				t.Errorf("publish duration observations: got %v, want >= 1", got)
			}
		})
	}
}

// sendThenFail is a producer whose sends reach Kafka but whose caller is
// told they failed: the relay dies between Kafka's ack and the outbox ack.
type sendThenFail struct {
	sarama.SyncProducer
}

func (p sendThenFail) SendMessages(msgs []*sarama.ProducerMessage) error {
	if err := p.SyncProducer.SendMessages(msgs); err != nil {
		return err
	}
	return errors.New("relay killed after send")
}

func TestRelayCrashBeforeAck(t *testing.T) {
	st := relayStock(t)
	brokers := testenv.Kafka(t)
	topic := testenv.Topic("orders")
	relayTopic(t, brokers, topic, 2)
	// One shard: the dying relay stops at its first failed batch, and the
	// test wants all entries pending for it.
	const shards = 1
	want := relayReserve(t, st, 7, shards, 25)
	producer := relayProducer(t, brokers)
	ctx := context.Background()

	dying, dyingReg := relayNew(t, st, sendThenFail{producer}, pipeline.RelayConfig{
		Topic: topic, Consumer: "dying", Shards: fixedShards(shards),
	})
	if _, err := dying.DrainOnce(ctx); err == nil {
		t.Fatal("DrainOnce of the dying relay: got nil, want the send error")
	}
	if got := relayBacklog(t, st, 7, shards); got != int64(len(want)) {
		t.Fatalf("outbox after a failed ack: got %d entries, want %d", got, len(want))
	}
	if got := metricValue(t, dyingReg, "seckill_relay_errors_total"); got != 1 {
		t.Errorf("errors_total of the dying relay: got %v, want 1", got)
	}

	const claimIdle = 500 * time.Millisecond
	heir, _ := relayNew(t, st, producer, pipeline.RelayConfig{
		Topic: topic, Consumer: "heir", ClaimIdle: claimIdle, Shards: fixedShards(shards),
	})
	// The entries belong to the dying relay until they sat idle ClaimIdle.
	if n, err := heir.DrainOnce(ctx); err != nil || n != 0 {
		t.Fatalf("heir before ClaimIdle: got %d, %v; want 0, nil", n, err)
	}
	total := 0
	eventually(t, 10*time.Second, "heir republishes", func() bool {
		n, err := heir.DrainOnce(ctx)
		if err != nil {
			t.Fatalf("heir DrainOnce: %v", err)
		}
		total += n
		return total >= len(want)
	})
	if total != len(want) {
		t.Errorf("heir published %d, want %d", total, len(want))
	}
	// Published, not stored: the outbox keeps them until the writer acks.
	if got := relayBacklog(t, st, 7, shards); got != int64(len(want)) {
		t.Errorf("outbox after republishing: got %d entries, want %d", got, len(want))
	}
	seen := publishedOrders(t, brokers, topic)
	for _, id := range want {
		if seen[id] < 1 {
			t.Errorf("order %d lost: in Kafka %d times, want >= 1", id, seen[id])
		}
	}
}

func TestRelayKafkaDown(t *testing.T) {
	st := relayStock(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(cluster.Close)
	var down atomic.Bool
	// While down, the broker drops every connection at its first request:
	// to a client that is a broker that is not there.
	cluster.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if down.Load() {
			return nil, errors.New("broker down"), true
		}
		return nil, nil, false
	})
	brokers := cluster.ListenAddrs()
	topic := testenv.Topic("orders")
	relayTopic(t, brokers, topic, 2)
	producer := relayProducer(t, brokers)

	const shards = 2
	want := relayReserve(t, st, 3, shards, 20)
	r, reg := relayNew(t, st, producer, pipeline.RelayConfig{
		Topic: topic, Consumer: "r1", MaxBackoff: 200 * time.Millisecond, Shards: fixedShards(shards),
	})
	down.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run after cancel: got %v, want nil", err)
		}
	}()

	eventually(t, 15*time.Second, "a failed publish", func() bool {
		return metricValue(t, reg, "seckill_relay_errors_total") > 0
	})
	if got := relayBacklog(t, st, 3, shards); got != int64(len(want)) {
		t.Fatalf("outbox while Kafka is down: got %d entries, want %d", got, len(want))
	}
	if got := metricValue(t, reg, "seckill_relay_published_total"); got != 0 {
		t.Errorf("published_total while Kafka is down: got %v, want 0", got)
	}
	if got := metricValue(t, reg, "seckill_outbox_backlog", "item", "3"); got != float64(len(want)) {
		t.Errorf("backlog gauge while Kafka is down: got %v, want %d", got, len(want))
	}

	// sarama's producer opens a 10s circuit breaker after failed leader
	// lookups, so recovery takes about that long.
	down.Store(false)
	// Every order in the topic, not the counter: published_total counts
	// a republished order again, so it can reach len(want) while orders
	// whose publish failed are still waiting for the next pass.
	var seen map[int64]int
	deadline := time.Now().Add(20 * time.Second)
	for {
		seen = publishedOrders(t, brokers, topic)
		missing := 0
		for _, id := range want {
			if seen[id] < 1 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, id := range want {
		if seen[id] < 1 {
			t.Errorf("order %d lost: in Kafka %d times, want >= 1", id, seen[id])
		}
	}
	if got := metricValue(t, reg, "seckill_relay_published_total"); got < float64(len(want)) {
		t.Errorf("published_total: got %v, want >= %d", got, len(want))
	}
}
