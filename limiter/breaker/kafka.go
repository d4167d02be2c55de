package breaker

import (
	"errors"

	"github.com/IBM/sarama"
)

// Producer guards a Kafka SyncProducer's sends with b: while b is open
// SendMessage and SendMessages fail at once with an *OpenError. The rest of
// the producer (Close, transactions) is p's own.
func Producer(b *Breaker, p sarama.SyncProducer) sarama.SyncProducer {
	if b == nil || p == nil {
		return p
	}
	return producer{SyncProducer: p, b: b}
}

type producer struct {
	sarama.SyncProducer
	b *Breaker
}

func (p producer) SendMessage(msg *sarama.ProducerMessage) (partition int32, offset int64, err error) {
	done, err := p.b.Allow()
	if err != nil {
		return 0, 0, err
	}
	partition, offset, err = p.SyncProducer.SendMessage(msg)
	done(classifyKafka(err))
	return partition, offset, err
}

func (p producer) SendMessages(msgs []*sarama.ProducerMessage) error {
	done, err := p.b.Allow()
	if err != nil {
		return err
	}
	err = p.SyncProducer.SendMessages(msgs)
	done(classifyKafka(err))
	return err
}

// classifyKafka: a send failed when a message of it found no broker to
// talk to, or its connection failed (Classify); an error a broker answered
// (a KError) is an answer.
func classifyKafka(err error) Outcome {
	var errs sarama.ProducerErrors
	if !errors.As(err, &errs) {
		return classifyKafkaOne(err)
	}
	out := Answered
	for _, e := range errs {
		switch classifyKafkaOne(e.Err) {
		case Failed:
			return Failed
		case Neutral:
			out = Neutral
		}
	}
	return out
}

func classifyKafkaOne(err error) Outcome {
	switch {
	case errors.Is(err, sarama.ErrOutOfBrokers), errors.Is(err, sarama.ErrNotConnected),
		errors.Is(err, sarama.ErrBrokerNotAvailable):
		return Failed
	case errors.Is(err, sarama.ErrClosedClient), errors.Is(err, sarama.ErrShuttingDown):
		return Neutral
	}
	return Classify(err)
}
