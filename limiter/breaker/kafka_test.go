package breaker

import (
	"errors"
	"fmt"
	"testing"

	"github.com/IBM/sarama"
)

// TestClassifyKafka: a send that found no broker, or lost its connection,
// is a failure; a broker's own error answer is an answer; a producer we
// closed tells nothing.
func TestClassifyKafka(t *testing.T) {
	perr := func(errs ...error) error {
		var pe sarama.ProducerErrors
		for _, e := range errs {
			pe = append(pe, &sarama.ProducerError{Msg: &sarama.ProducerMessage{Topic: "t"}, Err: e})
		}
		return pe
	}
	for _, tc := range []struct {
		name string
		err  error
		want Outcome
	}{
		{"sent", nil, Answered},
		{"no broker", perr(sarama.ErrOutOfBrokers), Failed},
		{"one of a batch lost its broker", perr(sarama.ErrMessageSizeTooLarge, sarama.ErrOutOfBrokers), Failed},
		{"broker refused the message", perr(sarama.ErrMessageSizeTooLarge), Answered},
		{"wrapped", fmt.Errorf("relay: %w", perr(sarama.ErrNotConnected)), Failed},
		{"closed producer", perr(sarama.ErrShuttingDown), Neutral},
		{"plain", errors.New("kafka: something else"), Answered},
	} {
		if got := classifyKafka(tc.err); got != tc.want {
			t.Errorf("%s: classifyKafka(%v) = %d, want %d", tc.name, tc.err, got, tc.want)
		}
	}
}
