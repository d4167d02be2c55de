// Package mq is the Kafka plumbing of seckill: producer and consumer
// configurations with the guarantees the order path relies on, topic
// creation, and the consumer group loop.
package mq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
)

// version is the Kafka protocol version the clients speak. Idempotent
// production needs at least 0.11; 3.x brokers and the embedded one accept
// it, and CreateTopics v4+ lets the broker pick the replication factor.
var version = sarama.V3_6_0_0

// ProducerConfig is the configuration of a producer that never loses an
// acknowledged message and never duplicates one because of its own retries:
// idempotent, acks from every in-sync replica, one request in flight per
// broker (which keeps per-partition order across retries).
func ProducerConfig(clientID string) *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.ClientID = clientID
	cfg.Version = version
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Return.Successes = true
	cfg.Producer.Return.Errors = true
	cfg.Producer.Retry.Max = 5
	cfg.Producer.Retry.BackoffFunc = func(retries, _ int) time.Duration {
		return Backoff(retries, 50*time.Millisecond, time.Second)
	}
	cfg.Producer.Partitioner = sarama.NewHashPartitioner
	cfg.Metadata.Retry.Max = 3
	cfg.Metadata.Retry.Backoff = 100 * time.Millisecond
	return cfg
}

// ConsumerConfig is the configuration of a consumer group member. A new
// group starts at the oldest offset, so nothing produced before the group
// first joined is skipped. Offsets are committed only for messages the
// handler marked, which it does after their rows are committed; marked
// offsets are auto-committed every second and a handler may call
// [sarama.ConsumerGroupSession.Commit] right after marking.
func ConsumerConfig(clientID string, sessionTimeout time.Duration) *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.ClientID = clientID
	cfg.Version = version
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = true
	cfg.Consumer.Offsets.AutoCommit.Interval = time.Second
	cfg.Consumer.Return.Errors = true
	// A fetch waits on the broker for up to MaxWaitTime, and responses on a
	// connection come back in order, so a Commit sent while a fetch waits
	// returns only after it. Keep the wait short: a handler commits once
	// per batch and must not stall for Kafka's default half second.
	cfg.Consumer.MaxWaitTime = 100 * time.Millisecond
	if sessionTimeout > 0 {
		cfg.Consumer.Group.Session.Timeout = sessionTimeout
		// Kafka's rule of thumb: heartbeat at a third of the session timeout.
		cfg.Consumer.Group.Heartbeat.Interval = sessionTimeout / 3
	}
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}
	return cfg
}

// EnsureTopics creates each topic (name -> partition count) that does not
// exist yet. A topic that already exists is left as it is, whatever its
// partition count. The replication factor is the broker's default.
func EnsureTopics(ctx context.Context, brokers []string, cfg *sarama.Config, topics map[string]int32) error {
	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	if err != nil {
		return fmt.Errorf("ensure topics: connect: %w", err)
	}
	defer admin.Close()
	for name, parts := range topics {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("ensure topic %s: %w", name, err)
		}
		err := admin.CreateTopic(name, &sarama.TopicDetail{NumPartitions: parts, ReplicationFactor: -1}, false)
		if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
			return fmt.Errorf("ensure topic %s: %w", name, err)
		}
	}
	return nil
}

// RunGroup consumes topics with h until ctx is done or the group is closed.
// Consume returns at every rebalance, so it is called in a loop; other
// errors are logged and retried with a capped exponential backoff.
func RunGroup(ctx context.Context, group sarama.ConsumerGroup, topics []string, h sarama.ConsumerGroupHandler, log *slog.Logger) error {
	go func() {
		// Errors of the claim loops arrive here (Consumer.Return.Errors);
		// the channel closes, and this goroutine ends, when the owner
		// closes the group.
		for err := range group.Errors() {
			log.Error("consumer group", "err", err)
		}
	}()
	failures := 0
	for {
		err := group.Consume(ctx, topics, h)
		switch {
		case errors.Is(err, sarama.ErrClosedConsumerGroup):
			return nil
		case ctx.Err() != nil:
			return nil
		case err != nil:
			failures++
			d := Backoff(failures, 100*time.Millisecond, 5*time.Second)
			log.Error("consume", "topics", topics, "err", err, "retry_in", d)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(d):
			}
		default:
			failures = 0
		}
	}
}

// Backoff is base doubled per attempt (attempt 1 waits base), capped at max.
func Backoff(attempt int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// Lag is how many messages of topic the consumer group has not committed
// yet, summed over the partitions; a partition the group never committed
// counts from its oldest message.
func Lag(admin sarama.ClusterAdmin, client sarama.Client, group, topic string) (int64, error) {
	parts, err := client.Partitions(topic)
	if err != nil {
		return 0, fmt.Errorf("lag of %s: %w", group, err)
	}
	offs, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	if err != nil {
		return 0, fmt.Errorf("lag of %s: %w", group, err)
	}
	var lag int64
	for _, p := range parts {
		newest, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return 0, fmt.Errorf("lag of %s: %w", group, err)
		}
		done := int64(-1)
		if b := offs.GetBlock(topic, p); b != nil {
			done = b.Offset
		}
		if done < 0 {
			if done, err = client.GetOffset(topic, p, sarama.OffsetOldest); err != nil {
				return 0, fmt.Errorf("lag of %s: %w", group, err)
			}
		}
		lag += max(newest-done, 0)
	}
	return lag, nil
}
