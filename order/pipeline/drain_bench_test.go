package pipeline_test

import (
	"context"
	"seckill/order/pipeline"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"seckill/app/testenv"
	"seckill/mq"
	"seckill/order"
	"seckill/stock"
)

// BenchmarkWriterDrain measures the consumer's drain rate: orders/s from a
// Kafka topic (4 partitions, embedded broker) into MariaDB, one group
// member, at several batch sizes (the production default is 500).
func BenchmarkWriterDrain(b *testing.B) {
	for _, batch := range []int{500, 2000} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) { benchmarkWriterDrain(b, batch) })
	}
}

func benchmarkWriterDrain(b *testing.B, batch int) {
	const n = 20_000
	ctx := context.Background()
	_, db := testenv.MySQL(b)
	store := order.NewStore(db)
	brokers := testenv.Kafka(b)
	topic, dlq := testenv.Topic("orders"), testenv.Topic("dlq")
	pcfg := mq.ProducerConfig("bench")
	if err := mq.EnsureTopics(ctx, brokers, pcfg, map[string]int32{topic: 4, dlq: 1}); err != nil {
		b.Fatal(err)
	}
	producer, err := sarama.NewSyncProducer(brokers, pcfg)
	if err != nil {
		b.Fatal(err)
	}
	defer producer.Close()
	w, err := pipeline.NewWriter(store, pipeline.WriterConfig{
		BatchSize: batch, BatchWait: 50 * time.Millisecond, OrderTTL: time.Hour,
	}, prometheus.NewRegistry(), quietLog())
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		it, err := store.CreateItem(ctx, order.Item{Name: "drain", Stock: n, Shards: 8, PerUserLimit: 1, StartsAt: time.Now()})
		if err != nil {
			b.Fatal(err)
		}
		msgs := make([]*sarama.ProducerMessage, 0, 1000)
		for j := 0; j < n; j++ {
			id := int64(i)*n + int64(j) + 1
			key, val := pipeline.EncodeReservation(stock.Reservation{OrderID: id, ItemID: it.ID, UserID: id, Shard: j % 8, Home: j % 8, At: time.Now()})
			msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.ByteEncoder(key), Value: sarama.ByteEncoder(val)})
			if len(msgs) == cap(msgs) {
				if err := producer.SendMessages(msgs); err != nil {
					b.Fatal(err)
				}
				msgs = msgs[:0]
			}
		}
		group, err := sarama.NewConsumerGroup(brokers, "drain-"+testenv.ID(), mq.ConsumerConfig("bench", 2*time.Second))
		if err != nil {
			b.Fatal(err)
		}
		gctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		b.StartTimer()
		start := time.Now()
		go func() { defer close(done); mq.RunGroup(gctx, group, []string{topic}, w, quietLog()) }()
		for {
			var rows int
			if err := db.Get(&rows, "SELECT COUNT(*) FROM orders WHERE item_id = ?", it.ID); err != nil {
				b.Fatal(err)
			}
			if rows == n {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		total += time.Since(start)
		b.StopTimer()
		cancel()
		<-done
		group.Close()
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "orders/s")
	b.ReportMetric(float64(batch), "batch")
}
