package pipeline_test

import (
	"context"
	"seckill/order/pipeline"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"seckill/app/testenv"
	"seckill/mq"
	"seckill/stock"
)

// TestRelayRecreatesLostGroupAndIsolatesShards: Redis lost one shard's
// stream and group; the relay keeps relaying the other shards in the same
// pass and relays the lost shard again once new entries arrive (it used to
// fail forever with NOGROUP on that shard and stop the whole pass).
func TestRelayRecreatesLostGroupAndIsolatesShards(t *testing.T) {
	st := relayStock(t)
	brokers := testenv.Kafka(t)
	topic := testenv.Topic("orders")
	relayTopic(t, brokers, topic, 2)
	const shards = 4
	r, reg := relayNew(t, st, relayProducer(t, brokers), pipeline.RelayConfig{Topic: topic, Consumer: "r1", Shards: fixedShards(shards)})
	first := relayReserve(t, st, 9, shards, 8)
	ctx := context.Background()
	if _, err := r.DrainOnce(ctx); err != nil {
		t.Fatal(err)
	}
	// Lose shard 0's stream (with its group).
	if err := st.DropOutbox(ctx, 9, 0, shards); err != nil {
		t.Fatal(err)
	}
	if err := st.SetShards(ctx, 9, []int64{8, 8, 8, 8}); err != nil {
		t.Fatal(err)
	}
	var more []int64
	for u := int64(5000); u < 5016; u++ {
		tok := testenv.TokenID()
		id, err := st.Reserve(ctx, stock.Purchase{ItemID: 9, UserID: u, Shards: shards, Limit: 1, Token: tok, OrderID: stock.WithGroup((9_500_000+u)<<22, stock.HomeGroup(9, u, shards))})
		if err != nil {
			t.Fatal(err)
		}
		more = append(more, id)
	}
	eventually(t, 10*time.Second, "every order published", func() bool {
		r.DrainOnce(ctx)
		seen := publishedOrders(t, brokers, topic)
		for _, id := range append(first, more...) {
			if seen[id] == 0 {
				return false
			}
		}
		return true
	})
	if metricValue(t, reg, "seckill_relay_errors_total") == 0 {
		t.Log("the lost group was recreated before any read failed")
	}
}

// TestRelayRecreatesLostTopic: the broker came back without its data (the
// topic is gone): the relay renews its producer, which creates the topic
// again, and relays on by itself (it used to fail until a restart).
func TestRelayRecreatesLostTopic(t *testing.T) {
	st := relayStock(t)
	brokers := testenv.Kafka(t)
	topic := testenv.Topic("orders")
	relayTopic(t, brokers, topic, 2)
	admin, err := sarama.NewClusterAdmin(brokers, mq.ProducerConfig("test-admin"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	renewed := 0
	renew := func(ctx context.Context) (sarama.SyncProducer, error) {
		renewed++
		if err := mq.EnsureTopics(ctx, brokers, mq.ProducerConfig("test"), map[string]int32{topic: 2}); err != nil {
			return nil, err
		}
		return sarama.NewSyncProducer(brokers, mq.ProducerConfig("test"))
	}
	// Not relayProducer: the relay closes the producer it replaces.
	first, err := sarama.NewSyncProducer(brokers, mq.ProducerConfig("test"))
	if err != nil {
		t.Fatal(err)
	}
	r, reg := relayNew(t, st, first, pipeline.RelayConfig{
		Topic: topic, Consumer: "r1", Shards: fixedShards(2), Renew: renew, RenewAfter: 100 * time.Millisecond,
	})
	t.Cleanup(func() { r.Producer().Close() })
	if err := admin.DeleteTopic(topic); err != nil {
		t.Fatal(err)
	}
	want := relayReserve(t, st, 11, 2, 10)
	ctx := context.Background()
	// Wait for the orders themselves, not for the published count: the
	// relay publishes at least once, and a batch it sends twice (claimed
	// again while unacked) counts twice before the other shard's is sent.
	var seen map[int64]int
	eventually(t, 30*time.Second, "every order in the recreated topic", func() bool {
		r.DrainOnce(ctx)
		if metricValue(t, reg, "seckill_relay_published_total") < float64(len(want)) {
			return false
		}
		seen = publishedOrders(t, brokers, topic)
		for _, id := range want {
			if seen[id] == 0 {
				return false
			}
		}
		return true
	})
	if renewed == 0 {
		t.Error("the producer was never renewed")
	}
}

// TestRelayIdleCostIndependentOfItems: an idle relay pass costs the same
// few Redis round trips with 1 item or 200 items of 8 shards, all settled
// (it used to poll every shard of every item ever created, forever), and an
// item with new reservations is relayed again at once.
func TestRelayIdleCostIndependentOfItems(t *testing.T) {
	st, hook, brokers, topic := countedRelayEnv(t)
	r, _ := relayNew(t, st, relayProducer(t, brokers), pipeline.RelayConfig{Topic: topic, Consumer: "r1", Shards: fixedShards(8)})
	ctx := context.Background()
	idlePass := func() int64 {
		// The first passes seed the active set and let it drain.
		for range 3 {
			if _, err := r.DrainOnce(ctx); err != nil {
				t.Fatal(err)
			}
		}
		before := hook.N.Load()
		if _, err := r.DrainOnce(ctx); err != nil {
			t.Fatal(err)
		}
		return hook.N.Load() - before
	}
	if err := st.Warm(ctx, 1, 10, 8); err != nil {
		t.Fatal(err)
	}
	one := idlePass()
	for id := int64(2); id <= 200; id++ {
		if err := st.Warm(ctx, id, 10, 8); err != nil {
			t.Fatal(err)
		}
	}
	// A new relay (restart) seeds from all 200 items, then forgets them.
	r, _ = relayNew(t, st, relayProducer(t, brokers), pipeline.RelayConfig{Topic: topic, Consumer: "r2", Shards: fixedShards(8)})
	many := idlePass()
	if many > one+1 || many > 3 {
		t.Errorf("idle pass: %d round trips with 1 item, %d with 200 items; want the same few", one, many)
	}
	want := relayReserve(t, st, 201, 8, 5)
	eventually(t, 10*time.Second, "new reservations relayed", func() bool {
		r.DrainOnce(ctx)
		seen := publishedOrders(t, brokers, topic)
		for _, id := range want {
			if seen[id] == 0 {
				return false
			}
		}
		return true
	})
}
