package pipeline_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"seckill/app/testenv"
	"seckill/order/pipeline"
	"seckill/stock"
)

// countedRelayEnv is a stock store whose Redis round trips hook counts,
// and a broker with a 2-partition orders topic.
func countedRelayEnv(t *testing.T) (*stock.Store, *testenv.RoundTrips, []string, string) {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	hook := &testenv.RoundTrips{}
	rdb.AddHook(hook)
	brokers := testenv.Kafka(t)
	topic := testenv.Topic("orders")
	relayTopic(t, brokers, topic, 2)
	return stock.NewStore(rdb, stock.Config{Prefix: prefix}), hook, brokers, topic
}

// countingProducer counts the sends of the producer it wraps.
type countingProducer struct {
	sarama.SyncProducer
	sends atomic.Int64
}

func (p *countingProducer) SendMessages(msgs []*sarama.ProducerMessage) error {
	p.sends.Add(1)
	return p.SyncProducer.SendMessages(msgs)
}

// TestRelayBatchesAllOutboxes: with new entries in 16 outboxes (2 items of
// 8 shards), one pass reads them in one pipelined round trip and sends
// them to Kafka in one call (it used to be a read and a send per shard).
func TestRelayBatchesAllOutboxes(t *testing.T) {
	st, hook, brokers, topic := countedRelayEnv(t)
	p := &countingProducer{SyncProducer: relayProducer(t, brokers)}
	r, _ := relayNew(t, st, p, pipeline.RelayConfig{Topic: topic, Consumer: "r1", Shards: fixedShards(8)})
	ctx := context.Background()
	// First sight of the outboxes: their consumer groups are created.
	relayReserve(t, st, 1, 8, 40)
	relayReserve(t, st, 2, 8, 40)
	if _, err := r.DrainOnce(ctx); err != nil {
		t.Fatal(err)
	}
	// More entries in every outbox of both items.
	var want []int64
	for item := int64(1); item <= 2; item++ {
		if err := st.SetShards(ctx, item, []int64{10, 10, 10, 10, 10, 10, 10, 10}); err != nil {
			t.Fatal(err)
		}
		for u := range 40 {
			want = append(want, reserveOne(t, st, item, 8, int64(5000+u)))
		}
	}
	for item := int64(1); item <= 2; item++ {
		for sh := range 8 {
			if n, _ := st.OutboxLen(ctx, stock.OutboxOf(item, sh, 8)); n == 0 {
				t.Fatalf("item %d shard %d has no new entry; pick other users", item, sh)
			}
		}
	}
	trips, sends := hook.N.Load(), p.sends.Load()
	n, err := r.DrainOnce(ctx)
	if err != nil || n != len(want) {
		t.Fatalf("pass: relayed %d, %v; want %d", n, err, len(want))
	}
	if got := p.sends.Load() - sends; got != 1 {
		t.Errorf("%d Kafka sends for 16 outboxes, want 1", got)
	}
	// The active sets, the reads, the backlog gauge once a second.
	if got := hook.N.Load() - trips; got > 3 {
		t.Errorf("%d Redis round trips for one pass over 16 outboxes, want at most 3", got)
	}
	seen := publishedOrders(t, brokers, topic)
	for _, id := range want {
		if seen[id] == 0 {
			t.Fatalf("order %d not published", id)
		}
	}
}

// reserveOne has user buy one unit of item.
func reserveOne(t *testing.T, st *stock.Store, item int64, shards int, user int64) int64 {
	t.Helper()
	ctx := context.Background()
	tok := testenv.TokenID()
	id, err := st.Reserve(ctx, stock.Purchase{ItemID: item, UserID: user, Shards: shards, Limit: 1, Token: tok,
		OrderID: stock.WithGroup((item*1_000_000+user)<<22, stock.HomeGroup(item, user, shards))})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestRelayIdleScansOncePerScanEvery: an idle relay reads the 64 slot
// groups' active sets once per ScanEvery, not on every idle poll (6 polls
// a second: two idle instances sent Redis ~980 commands/s), and a purchase
// made by this process is relayed at once, without waiting for a scan.
func TestRelayIdleScansOncePerScanEvery(t *testing.T) {
	st, hook, brokers, topic := countedRelayEnv(t)
	r, _ := relayNew(t, st, relayProducer(t, brokers), pipeline.RelayConfig{Topic: topic, Consumer: "r1", Shards: fixedShards(8), ScanEvery: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	// Idle for a while: the first pass (the items read for the seed, then
	// the scan: 2 round trips), then nothing.
	eventually(t, 10*time.Second, "first pass", func() bool { return hook.N.Load() >= 2 })
	before := hook.N.Load()
	window := time.NewTimer(time.Second) // a measurement window, not a wait for a state
	<-window.C
	if got := hook.N.Load() - before; got > 1 {
		t.Errorf("idle relay: %d Redis round trips in 1s with ScanEvery 1h, want none", got)
	}
	want := relayReserve(t, st, 1, 8, 5)
	eventually(t, 10*time.Second, "this process's purchases relayed without a scan", allPublished(t, brokers, topic, want))
}

// TestRelayGathersATrickle: while purchases trickle in one after another,
// the relay sends what arrived during one Linger in one Kafka send, rather
// than a pass (a read per outbox and a send) for every purchase or two. The
// bound is set by the time the purchases took, so a slow machine (fewer,
// slower purchases per Linger) keeps to it as well as a fast one; without
// a linger, a pass follows the previous one at once (well under a
// millisecond apart on loopback) and the sends number in the hundreds.
func TestRelayGathersATrickle(t *testing.T) {
	const linger, buyers = 20 * time.Millisecond, 400
	st, _, brokers, topic := countedRelayEnv(t)
	p := &countingProducer{SyncProducer: relayProducer(t, brokers)}
	r, _ := relayNew(t, st, p, pipeline.RelayConfig{Topic: topic, Consumer: "r1", Shards: fixedShards(8), Linger: linger})
	ctx := context.Background()
	// The item's outboxes and their consumer groups exist before the
	// trickle starts, and every later pass finds only new entries.
	relayReserve(t, st, 1, 8, 40)
	if _, err := r.DrainOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.SetShards(ctx, 1, []int64{buyers, buyers, buyers, buyers, buyers, buyers, buyers, buyers}); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); r.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })

	sends := p.sends.Load()
	start := time.Now()
	want := make([]int64, 0, buyers)
	for u := range buyers {
		want = append(want, reserveOne(t, st, 1, 8, int64(10_000+u)))
	}
	took := time.Since(start)
	eventually(t, 10*time.Second, "every purchase relayed", allPublished(t, brokers, topic, want))
	// One send per Linger while the trickle lasts, a pass after an idle
	// wake-up now and then, and the tail.
	got := p.sends.Load() - sends
	bound := 2*int64(took/linger) + 4
	t.Logf("%d purchases in %v: %d Kafka sends (bound %d)", buyers, took.Round(time.Millisecond), got, bound)
	if got > bound {
		t.Errorf("%d Kafka sends for %d purchases that took %v, want at most %d (one per %v linger)", got, buyers, took, bound, linger)
	}
}

// allPublished reports whether every order of want is in the topic.
func allPublished(t *testing.T, brokers []string, topic string, want []int64) func() bool {
	return func() bool {
		seen := publishedOrders(t, brokers, topic)
		for _, id := range want {
			if seen[id] == 0 {
				return false
			}
		}
		return true
	}
}
