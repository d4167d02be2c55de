package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"seckill/order"
	"strconv"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"seckill/mq"
	"seckill/stock"
)

// Inserter stores a batch of new orders in one transaction, and what cannot
// become an order as dead letters; *order.Store is one.
type Inserter interface {
	InsertOrders(ctx context.Context, orders []order.Order) (order.BatchResult, error)
	RecordDeadLetters(ctx context.Context, dls []order.DeadLetter) error
}

// WriterConfig tunes a Writer.
type WriterConfig struct {
	// BatchSize is the most messages inserted in one transaction. Default 500.
	BatchSize int
	// BatchWait is how long a batch waits to fill after its first message.
	// Default 50ms.
	BatchWait time.Duration
	// OrderTTL is how long a new order stays payable. Required.
	OrderTTL time.Duration
	// MaxBackoff caps the pause between retries of a failed batch. Default 5s.
	MaxBackoff time.Duration
	// Ack, if set, removes the reservations of a stored batch from their
	// outboxes (stock.Store.AckEntries). Until then the outbox holds them.
	Ack func(ctx context.Context, entries []stock.Entry) error
	// AckQueue bounds the failed acknowledgements waiting for Run's retry.
	// Default 64 batches.
	AckQueue int
}

// Writer is the consumer group handler that turns reservation messages into
// order rows. A partition's offset moves only past messages whose rows are
// committed in MySQL (or recorded as dead letters), so a crash
// anywhere makes Kafka redeliver, and redelivery inserts nothing twice.
type Writer struct {
	store Inserter
	cfg   WriterConfig
	log   *slog.Logger

	batchSize prometheus.Histogram
	commitDur prometheus.Histogram
	orders    prometheus.Counter
	refusals  prometheus.Counter
	collided  prometheus.Counter
	dead      *prometheus.CounterVec
	errs      prometheus.Counter
	lag       *prometheus.GaugeVec
	ackLeft   prometheus.Counter

	// acks holds failed acknowledgements for Run to retry.
	acks chan []stock.Entry
}

// NewWriter returns a Writer inserting into store.
func NewWriter(store Inserter, cfg WriterConfig, reg prometheus.Registerer, log *slog.Logger) (*Writer, error) {
	if cfg.OrderTTL <= 0 {
		return nil, fmt.Errorf("new writer: order ttl %v, want > 0", cfg.OrderTTL)
	}
	if store == nil {
		return nil, errors.New("new writer: store is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.BatchWait <= 0 {
		cfg.BatchWait = 50 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.AckQueue <= 0 {
		cfg.AckQueue = 64
	}
	w := &Writer{
		store: store, cfg: cfg, log: log, acks: make(chan []stock.Entry, cfg.AckQueue),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "seckill_consumer_batch_size",
			Help:    "Messages per batch handled by the order writer.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12), // 1 to 2048
		}),
		commitDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "seckill_consumer_commit_duration_seconds",
			Help:    "Time of the successful MySQL transaction of one batch.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		orders: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "seckill_consumer_orders_total",
			Help: "order.Order rows inserted by the writer (redeliveries not counted).",
		}),
		refusals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "seckill_db_guard_refusals_total",
			Help: "Orders the MySQL stock guard refused: oversell attempts that got past Redis.",
		}),
		collided: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "seckill_order_id_collisions_total",
			Help: "Orders whose id was already another order's (another buyer or item): dead letters, never a silent drop.",
		}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seckill_dlq_messages_total",
			Help: "Messages sent to the dead-letter topic, by reason.",
		}, []string{"reason"}),
		errs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "seckill_consumer_errors_total",
			Help: "Failed attempts at a batch (MySQL or dead-letter send); the batch is retried.",
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "seckill_consumer_lag",
			Help: "Messages of a partition not yet handled by this writer.",
		}, []string{"partition"}),
		ackLeft: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "seckill_consumer_acks_left_total",
			Help: "Stored batches whose outbox acknowledgement was given up (queue full, retries spent, or stopping); the relay sends them again and the writer stores nothing twice.",
		}),
	}
	for _, c := range []prometheus.Collector{w.batchSize, w.commitDur, w.orders, w.refusals, w.collided, w.dead, w.errs, w.lag, w.ackLeft} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("new writer: register metrics: %w", err)
		}
	}
	// Both reasons show from the start, at 0, so alerts can use rate().
	w.dead.WithLabelValues(order.ReasonDecode)
	w.dead.WithLabelValues(order.ReasonOversell)
	w.dead.WithLabelValues(order.ReasonIDCollision)
	return w, nil
}

// Setup is called at the start of a group session; the writer keeps no
// per-session state.
func (w *Writer) Setup(sarama.ConsumerGroupSession) error { return nil }

// Cleanup is called at the end of a group session.
func (w *Writer) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim handles one partition's messages in batches until the claim
// or the session ends. The partition's lag series goes with the claim: the
// partition's next owner reports it.
func (w *Writer) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	ctx := sess.Context()
	defer w.lag.DeleteLabelValues(strconv.Itoa(int(claim.Partition())))
	for {
		batch, open := w.collect(ctx, claim.Messages())
		if len(batch) > 0 && ctx.Err() == nil {
			if !w.handle(ctx, sess, claim, batch) {
				// The session ended before the batch was stored: leave it
				// unmarked, the partition's next owner reads it again.
				return nil
			}
		}
		if !open || ctx.Err() != nil {
			return nil
		}
	}
}

// collect waits for a first message, then gathers more until the batch is
// full or BatchWait passed. open is false once the claim's channel closed.
func (w *Writer) collect(ctx context.Context, msgs <-chan *sarama.ConsumerMessage) (batch []*sarama.ConsumerMessage, open bool) {
	select {
	case m, ok := <-msgs:
		if !ok {
			return nil, false
		}
		batch = append(batch, m)
	case <-ctx.Done():
		return nil, true
	}
	t := time.NewTimer(w.cfg.BatchWait)
	defer t.Stop()
	for len(batch) < w.cfg.BatchSize {
		select {
		case m, ok := <-msgs:
			if !ok {
				return batch, false
			}
			batch = append(batch, m)
		case <-t.C:
			return batch, true
		case <-ctx.Done():
			return batch, true
		}
	}
	return batch, true
}

// handle stores a batch and then marks it, retrying each step until it
// succeeds or ctx ends; it reports whether the batch was marked. A batch is

// handle stores one batch: decodes it, inserts the orders in one
// transaction, records what cannot become an order in MySQL's dead letters,
// acknowledges the stored reservations in their outboxes, and only then
// marks the batch's offsets. MySQL down means retry without marking, so
// nothing is lost; it returns false only when ctx ended.
func (w *Writer) handle(ctx context.Context, sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim, batch []*sarama.ConsumerMessage) bool {
	w.batchSize.Observe(float64(len(batch)))
	var (
		orders  []order.Order
		dead    []order.DeadLetter
		entries []stock.Entry
		source  = make(map[sourceKey]*sarama.ConsumerMessage, len(batch))
	)
	for _, m := range batch {
		o, e, err := DecodeReservation(m.Value, w.cfg.OrderTTL)
		if err != nil {
			w.log.Error("writer: undecodable message", "partition", m.Partition, "offset", m.Offset, "err", err)
			dead = append(dead, order.DeadLetter{Reason: order.ReasonDecode, Payload: m.Value, Detail: err.Error()})
			continue
		}
		entries = append(entries, e)
		// Every order goes to the store, which tells a redelivery from a
		// repeated id; the message is found by the order's id and parties.
		orders = append(orders, o)
		source[keyOf(o)] = m
	}

	if len(orders) > 0 {
		var res order.BatchResult
		ok := w.retry(ctx, "insert orders", func() error {
			start := time.Now()
			var err error
			res, err = w.store.InsertOrders(ctx, orders)
			if err == nil {
				w.commitDur.Observe(time.Since(start).Seconds())
			}
			return err
		})
		if !ok {
			return false
		}
		w.orders.Add(float64(res.Inserted))
		w.refusals.Add(float64(len(res.Refused)))
		for _, o := range res.Refused {
			m, ok := source[keyOf(o)]
			if !ok {
				continue // InsertBatch returns only orders it was given
			}
			w.log.Error("writer: stock guard refused order", "order", o.ID, "item", o.ItemID)
			dead = append(dead, order.DeadLetter{Reason: order.ReasonOversell, OrderID: &o.ID, ItemID: &o.ItemID,
				UserID: &o.UserID, Shard: &o.Shard, Payload: m.Value, Detail: "items.sold reached stock"})
		}
		dead = append(dead, w.collisions(res.Collided, source)...)
	}
	if len(dead) > 0 {
		if !w.retry(ctx, "record dead letters", func() error { return w.store.RecordDeadLetters(ctx, dead) }) {
			return false
		}
		for _, d := range dead {
			w.dead.WithLabelValues(d.Reason).Inc()
		}
	}
	// Stored (or dead-lettered): the outbox can let go. A failed ack is
	// retried by Run (Redis down a moment), so the stored entries do not
	// linger; if Redis stays away, or Run's queue is full, the relay sends
	// them again after its claim timeout and they are inserted once.
	if w.cfg.Ack != nil && len(entries) > 0 {
		if err := w.cfg.Ack(ctx, entries); err != nil && ctx.Err() == nil {
			w.errs.Inc()
			w.log.Warn("writer: acknowledge outbox entries, retrying", "n", len(entries), "err", err)
			w.ackLater(entries)
		}
	}

	// Only now, with every message of the batch stored or dead-lettered,
	// may the offset move past it. Commit now rather than at the next
	// auto-commit tick, to keep redelivery after a crash small.
	last := batch[len(batch)-1]
	sess.MarkMessage(last, "")
	sess.Commit()
	w.lag.WithLabelValues(strconv.Itoa(int(claim.Partition()))).Set(float64(max(claim.HighWaterMarkOffset()-last.Offset-1, 0)))
	return true
}

// sourceKey finds the message of an order: its id and parties (two orders
// that got the same id are two messages).
type sourceKey struct{ id, item, user int64 }

func keyOf(o order.Order) sourceKey { return sourceKey{o.ID, o.ItemID, o.UserID} }

// collisions are the dead letters of orders whose id was another order's,
// counted and logged: a repeated id never drops an order silently.
func (w *Writer) collisions(cs []order.Collision, source map[sourceKey]*sarama.ConsumerMessage) []order.DeadLetter {
	var dead []order.DeadLetter
	for _, c := range cs {
		o := c.Order
		m, ok := source[keyOf(o)]
		if !ok {
			continue // InsertOrders returns only orders it was given
		}
		w.collided.Inc()
		w.log.Error("writer: order id already another order's", "order", o.ID, "item", o.ItemID, "user", o.UserID,
			"other_item", c.Other.ItemID, "other_user", c.Other.UserID)
		dead = append(dead, order.DeadLetter{Reason: order.ReasonIDCollision, OrderID: &o.ID, ItemID: &o.ItemID,
			UserID: &o.UserID, Shard: &o.Shard, Payload: m.Value,
			Detail: fmt.Sprintf("order id %d is stored for user %d, item %d", o.ID, c.Other.UserID, c.Other.ItemID)})
	}
	return dead
}

// ackLater queues entries for Run's retries, or leaves them to the relay's
// resend if the queue is full: blocking here would stop the writer (and
// its offsets) for as long as Redis is away, for entries that are stored
// already. An entry left in the outbox is sent again, found stored by the
// insert (INSERT IGNORE on the order id) and acknowledged then; the
// recovery counts each order once whether or not its entry lingers.
func (w *Writer) ackLater(entries []stock.Entry) {
	select {
	case w.acks <- entries:
	default:
		w.ackLeft.Inc()
		w.log.Warn("writer: acknowledgement queue full; entries left to the relay's resend", "n", len(entries))
	}
}

// Run retries the acknowledgements that failed in ConsumeClaim until ctx
// ends; the writer's owner runs it next to the consumer group and waits for
// it. Each queued batch is retried for up to ackRetryFor. What is still
// queued when ctx ends is left to the relay's resend.
func (w *Writer) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			if n := len(w.acks); n > 0 {
				w.ackLeft.Add(float64(n))
				w.log.Warn("writer: stopping; outbox entries left to the relay's resend", "batches", n)
			}
			return
		case entries := <-w.acks:
			w.retryAck(ctx, entries)
		}
	}
}

// retryAck retries one acknowledgement for up to ackRetryFor or until ctx
// ends.
func (w *Writer) retryAck(ctx context.Context, entries []stock.Entry) {
	deadline := time.Now().Add(ackRetryFor)
	for attempt := 1; time.Now().Before(deadline); attempt++ {
		t := time.NewTimer(mq.Backoff(attempt, 100*time.Millisecond, 2*time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			w.ackLeft.Inc()
			return
		case <-t.C:
		}
		if err := w.cfg.Ack(ctx, entries); err == nil {
			return
		}
	}
	w.ackLeft.Inc()
	w.log.Warn("writer: outbox entries left to the relay's resend", "n", len(entries))
}

// ackRetryFor bounds the retries of one failed ack.
const ackRetryFor = 2 * time.Minute

// retry runs fn until it succeeds (true) or ctx ends (false), with a capped
// exponential backoff between attempts.
func (w *Writer) retry(ctx context.Context, what string, fn func() error) bool {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		w.errs.Inc()
		d := mq.Backoff(attempt, 50*time.Millisecond, w.cfg.MaxBackoff)
		w.log.Error("writer: "+what, "attempt", attempt, "retry_in", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}
