package mq_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"seckill/app/testenv"
	"seckill/mq"
)

func TestEnsureTopics(t *testing.T) {
	brokers := testenv.Kafka(t)
	ctx := context.Background()
	a, b := testenv.Topic("mq.a"), testenv.Topic("mq.b")
	topics := map[string]int32{a: 3, b: 1}
	cfg := mq.ProducerConfig("test")
	// Twice: the second call finds both topics and must not fail.
	for i := range 2 {
		if err := mq.EnsureTopics(ctx, brokers, cfg, topics); err != nil {
			t.Fatalf("EnsureTopics call %d: got %v, want nil", i+1, err)
		}
	}
	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	defer admin.Close()
	md, err := admin.DescribeTopics([]string{a, b})
	if err != nil {
		t.Fatalf("describe: %v", err)
	}
	got := map[string]int32{}
	for _, m := range md {
		got[m.Name] = int32(len(m.Partitions))
	}
	for name, want := range topics {
		if got[name] != want {
			t.Errorf("partitions of %s: got %d, want %d", name, got[name], want)
		}
	}
}

func TestEnsureTopicsCancelled(t *testing.T) {
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := mq.EnsureTopics(ctx, brokers, mq.ProducerConfig("test"), map[string]int32{testenv.Topic("mq.c"): 1})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("EnsureTopics with a cancelled ctx: got %v, want context.Canceled", err)
	}
}

// collector records every message it sees and marks it.
type collector struct {
	mu   sync.Mutex
	seen map[string]int
	n    int
	done chan struct{}
	want int
}

func (c *collector) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (c *collector) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (c *collector) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		c.mu.Lock()
		c.seen[string(m.Value)]++
		c.n++
		if c.n == c.want {
			close(c.done)
		}
		c.mu.Unlock()
		s.MarkMessage(m, "")
		s.Commit()
	}
	return nil
}

// joined is a collector that closes up when its first session starts.
type joined struct {
	*collector
	once sync.Once
	up   chan struct{}
}

func (j *joined) Setup(sarama.ConsumerGroupSession) error {
	j.once.Do(func() { close(j.up) })
	return nil
}

// TestProduceConsume sends through the idempotent producer and reads back
// through RunGroup: every message arrives once, and RunGroup returns nil on
// cancellation.
func TestProduceConsume(t *testing.T) {
	brokers := testenv.Kafka(t)
	ctx := context.Background()
	topic := testenv.Topic("mq.pc")
	if err := mq.EnsureTopics(ctx, brokers, mq.ProducerConfig("test"), map[string]int32{topic: 4}); err != nil {
		t.Fatalf("ensure topics: %v", err)
	}
	p, err := sarama.NewSyncProducer(brokers, mq.ProducerConfig("test"))
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer p.Close()
	const n = 100
	msgs := make([]*sarama.ProducerMessage, n)
	for i := range msgs {
		msgs[i] = &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(strconv.Itoa(i % 7)), Value: sarama.StringEncoder(strconv.Itoa(i))}
	}
	if err := p.SendMessages(msgs); err != nil {
		t.Fatalf("send: %v", err)
	}

	g, err := sarama.NewConsumerGroup(brokers, "g"+testenv.ID(), mq.ConsumerConfig("test", 6*time.Second))
	if err != nil {
		t.Fatalf("group: %v", err)
	}
	defer g.Close()
	c := &collector{seen: map[string]int{}, done: make(chan struct{}), want: n}
	runCtx, cancel := context.WithCancel(ctx)
	res := make(chan error, 1)
	go func() {
		res <- mq.RunGroup(runCtx, g, []string{topic}, c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		c.mu.Lock()
		defer c.mu.Unlock()
		t.Fatalf("consumed %d messages in 20s, want %d", c.n, n)
	}
	cancel()
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("RunGroup after cancel: got %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RunGroup did not return within 10s of cancel")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range n {
		if got := c.seen[strconv.Itoa(i)]; got != 1 {
			t.Errorf("message %d seen %d times, want 1", i, got)
		}
	}
}

// TestRunGroupClosed: closing the group ends RunGroup without an error.
func TestRunGroupClosed(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic("mq.cl")
	if err := mq.EnsureTopics(context.Background(), brokers, mq.ProducerConfig("test"), map[string]int32{topic: 1}); err != nil {
		t.Fatalf("ensure topics: %v", err)
	}
	g, err := sarama.NewConsumerGroup(brokers, "g"+testenv.ID(), mq.ConsumerConfig("test", 6*time.Second))
	if err != nil {
		t.Fatalf("group: %v", err)
	}
	res := make(chan error, 1)
	h := &joined{collector: &collector{seen: map[string]int{}, done: make(chan struct{})}, up: make(chan struct{})}
	go func() {
		res <- mq.RunGroup(context.Background(), g, []string{topic}, h, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	// Close while RunGroup is inside a session, not before it joined.
	select {
	case <-h.up:
	case err := <-res:
		t.Fatalf("RunGroup before Close: got %v, want it consuming", err)
	case <-time.After(20 * time.Second):
		t.Fatal("RunGroup did not join the group within 20s")
	}
	if err := g.Close(); err != nil {
		t.Fatalf("close group: %v", err)
	}
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("RunGroup after Close: got %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RunGroup did not return within 10s of Close")
	}
}
