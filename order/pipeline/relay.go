// Package pipeline moves accepted reservations into MySQL: the relay reads
// the Redis outboxes and publishes to Kafka, the writer consumes Kafka into
// MySQL (order.Store) and then acknowledges the outbox entries. Each side
// only ever hands a reservation on once the next one holds it.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"seckill/mq"
	"seckill/stock"
)

// RelayConfig tunes a Relay.
type RelayConfig struct {
	// Topic receives the reservations.
	Topic string
	// Group is the Redis consumer group of the outboxes, shared by every
	// relay instance. Default "relay".
	Group string
	// Consumer names this instance in the group; unique per instance.
	Consumer string
	// BatchSize is the most reservations read, and sent in one
	// SendMessages call, at a time. Default 500.
	BatchSize int64
	// ClaimIdle is how long a reservation may stay read but unacknowledged
	// before any relay takes it over (its relay presumably crashed between
	// reading and acknowledging). Default 30s.
	ClaimIdle time.Duration
	// Interval is the pause after a pass that found nothing. Default 20ms.
	Interval time.Duration
	// Linger is the shortest time from the start of one pass to the start
	// of the next while reservations trickle in: after a pass that relayed
	// some, but less than a full batch, the relay waits out the rest of
	// Linger, so that the reservations arriving meanwhile go together in
	// one read per outbox and one Kafka send instead of a pass each (a
	// 202 does not wait for the relay: the reservation is in its outbox).
	// A pass that met a full batch is followed at once. Default 5ms;
	// negative: no linger.
	Linger time.Duration
	// ScanEvery is how often the relay reads every slot group's set of
	// active outboxes (entries written by other instances; default 1s).
	// Between scans it drains the outboxes it knows and those this
	// process's purchases wrote to (stock.Store.TakeTouched), so an idle
	// relay costs Redis one scan per ScanEvery and nothing else.
	ScanEvery time.Duration
	// MaxBackoff caps the exponential pause after failed passes. Default 5s.
	MaxBackoff time.Duration
	// Shards returns the shard count of an item. The relay calls it for
	// every item once, at its first pass, to seed the set of active
	// outboxes with entries written before that set existed.
	Shards func(ctx context.Context, itemID int64) (int, error)
	// Renew, if set, is called after publishing failed for RenewAfter: it
	// makes sure the topics exist (a broker that came back without its
	// data has none) and returns a fresh producer (an idempotent producer's
	// sequence state does not survive such a broker). The relay closes the
	// old producer.
	Renew func(ctx context.Context) (sarama.SyncProducer, error)
	// RenewAfter is how long publishing must keep failing before Renew is
	// called. Default 3s.
	RenewAfter time.Duration
}

// RelayGroup is the default Redis consumer group of the outboxes.
const RelayGroup = "relay"

// DefaultLinger is RelayConfig.Linger's default.
const DefaultLinger = 5 * time.Millisecond

// maxBatches bounds the batches one pass reads from one source of a shard.
const maxBatches = 16

// Relay moves reservations from the Redis outboxes to Kafka. It does not
// remove what it sent: an entry leaves its outbox only when the order writer
// stored its order in MySQL (Writer's Ack), so neither a crash nor a broker
// that loses its data loses a reservation. An entry sent but not stored
// within ClaimIdle is taken over and sent again (by any relay); the writer
// inserts it once.
type Relay struct {
	st       *stock.Store
	producer sarama.SyncProducer
	cfg      RelayConfig
	log      *slog.Logger

	published prometheus.Counter
	duration  prometheus.Histogram
	errors    prometheus.Counter
	backlog   *prometheus.GaugeVec
	broken    prometheus.Counter

	brokenMu   sync.Mutex
	brokenSeen map[string]struct{} // "stream id" of broken entries logged

	// mu serialises passes; the maps below belong to whoever holds it.
	mu     sync.Mutex
	seeded bool
	groups map[stock.Outbox]bool
	// known holds the outboxes with entries as far as this relay knows:
	// the last scan's, plus those this process wrote to since.
	known     map[stock.Outbox]bool
	scannedAt time.Time
	// retry holds batches that were read, but whose publish failed: they
	// are pending for this consumer in Redis, and ReadOutbox(">") will not
	// return them again.
	retry map[stock.Outbox][]stock.Reservation
	// suspect holds outboxes whose last read failed: Redis may have
	// delivered entries in a reply that never arrived, so the next pass
	// reads this relay's own pending entries there first.
	suspect map[stock.Outbox]bool
	// failingSince is when publishing started failing (zero: it works).
	failingSince time.Time
	renewedAt    time.Time
	refreshedAt  time.Time
	claimedAt    time.Time
	prunedAt     time.Time
	gauged       map[int64]time.Time // item -> last seen with a backlog
}

// NewRelay returns a relay from st's outboxes to cfg.Topic through producer,
// whose config must be mq.ProducerConfig's (idempotent, acks=all).
func NewRelay(st *stock.Store, producer sarama.SyncProducer, cfg RelayConfig, reg prometheus.Registerer, log *slog.Logger) (*Relay, error) {
	switch {
	case cfg.Topic == "":
		return nil, errors.New("new relay: no topic")
	case cfg.Consumer == "":
		return nil, errors.New("new relay: no consumer name")
	case cfg.Shards == nil:
		return nil, errors.New("new relay: no shard count func")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Group == "" {
		cfg.Group = RelayGroup
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.ClaimIdle <= 0 {
		cfg.ClaimIdle = 30 * time.Second
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 20 * time.Millisecond
	}
	if cfg.Linger == 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.ScanEvery <= 0 {
		cfg.ScanEvery = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.RenewAfter <= 0 {
		cfg.RenewAfter = 3 * time.Second
	}
	r := &Relay{
		st: st, producer: producer, cfg: cfg, log: log,
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "seckill_relay_published_total",
			Help: "Reservations acknowledged by Kafka.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "seckill_relay_publish_duration_seconds",
			Help:    "Time of one batch send to Kafka.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "seckill_relay_errors_total",
			Help: "Failed relay steps (Kafka sends, Redis reads and acks).",
		}),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "seckill_outbox_backlog",
			Help: "Reservations in an item's outboxes not yet acknowledged by Kafka.",
		}, []string{"item"}),
		broken: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "seckill_outbox_broken_entries_total",
			Help: "Outbox entries that are not reservations (left in their stream, not published; logged with stream and id).",
		}),
		brokenSeen: map[string]struct{}{},
		groups:     map[stock.Outbox]bool{},
		known:      map[stock.Outbox]bool{},
		retry:      map[stock.Outbox][]stock.Reservation{},
		suspect:    map[stock.Outbox]bool{},
		gauged:     map[int64]time.Time{},
	}
	for _, c := range []prometheus.Collector{r.published, r.duration, r.errors, r.backlog, r.broken} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("new relay: register metrics: %w", err)
		}
	}
	st.OnBrokenEntry(r.brokenEntry)
	return r, nil
}

// Run relays until ctx is done, then returns nil. A failed pass is retried
// after an exponential backoff; its entries stay in the outbox meanwhile.
func (r *Relay) Run(ctx context.Context) error {
	failures, idle := 0, 0
	for {
		start := time.Now()
		n, err := r.DrainOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		lingering := false
		switch {
		case err == nil && n > 0 && int64(n) < r.cfg.BatchSize && r.cfg.Linger > 0:
			// A trickle: let the next reservations gather (see Linger).
			failures, idle = 0, 0
			if wait = r.cfg.Linger - time.Since(start); wait <= 0 {
				continue
			}
			lingering = true
		case err != nil:
			failures++
			wait = mq.Backoff(failures, 50*time.Millisecond, r.cfg.MaxBackoff)
			r.log.Error("relay pass", "err", err, "retry_in", wait)
		case n == 0:
			// Idle: poll less and less often, up to 8 intervals, so a quiet
			// instance does not keep Redis busy with empty reads.
			failures = 0
			wait = r.cfg.Interval << min(idle, 3)
			idle++
		default:
			failures, idle = 0, 0
			continue // more may be waiting
		}
		// Idle, a purchase here that wrote to an outbox ends the wait; a
		// failing pass keeps its backoff, a lingering one its linger.
		var touched <-chan struct{}
		if err == nil && !lingering {
			touched = r.st.Touched()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-touched:
			t.Stop()
			idle = 0
		}
	}
}

// DrainOnce makes one pass over the outboxes that hold entries (the
// active sets the purchase scripts keep; on the first pass also every shard
// of every item, for entries written before those sets): it republishes its
// own failed batches, takes over entries idle for ClaimIdle, and publishes
// new entries until the outboxes are empty (or up to maxBatches rounds).
// New entries of all outboxes are read in one pipelined round trip and sent
// to Kafka in one call per round, whatever the number of shards. An outbox
// left with nothing in it leaves the active set, so an idle relay costs one
// read per pass whatever the number of items. It returns how many
// reservations Kafka acknowledged. A failing item or shard does not stop
// the others: the pass goes on and returns every error it met.
func (r *Relay) DrainOnce(ctx context.Context) (total int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer func() {
		if err != nil && ctx.Err() == nil {
			r.errors.Inc()
		}
	}()
	outboxes, err := r.outboxes(ctx)
	if err != nil {
		return 0, err
	}
	// Entries of a crashed relay can only be claimed once idle for
	// ClaimIdle, so looking for them a few times per ClaimIdle is enough.
	claim := time.Since(r.claimedAt) >= r.cfg.ClaimIdle/4
	if claim {
		r.claimedAt = time.Now()
	}
	// Consumers of relays gone for ClaimIdle leave the group (see
	// prepare), once per ClaimIdle.
	prune := time.Since(r.prunedAt) >= r.cfg.ClaimIdle
	if prune {
		r.prunedAt = time.Now()
	}
	// Drained outboxes leave the active set once a second, not on every
	// pass: a busy relay passes many times a second, and each look costs
	// Redis a call per outbox.
	forget := false
	if time.Since(r.refreshedAt) >= time.Second {
		// Before draining, so the gauge moves while Kafka is down too.
		r.refreshedAt = time.Now()
		r.refresh(ctx, outboxes)
		forget = true
	}
	p := &pass{failed: map[stock.Outbox]bool{}, sent: map[stock.Outbox]int{}}
	// 1. Per outbox, the rare work: its group, its own entries after a
	// failed read, a failed batch, entries of a crashed relay.
	for _, o := range outboxes {
		if ctx.Err() != nil {
			return p.total, ctx.Err()
		}
		k, err := r.prepare(ctx, o, claim, prune)
		p.add(o, k)
		if err != nil {
			r.fail(p, o, err)
		}
	}
	// 2. New entries of every outbox.
	r.drainNew(ctx, p, outboxes)
	r.settle(ctx, p, outboxes, forget)
	return p.total, errors.Join(p.errs...)
}

// pass is what one DrainOnce found so far.
type pass struct {
	total  int
	errs   []error
	failed map[stock.Outbox]bool
	sent   map[stock.Outbox]int
}

// add counts k reservations of outbox o that Kafka acknowledged.
func (p *pass) add(o stock.Outbox, k int) {
	p.total += k
	p.sent[o] += k
}

// fail records an outbox's failure in the pass: its own pending entries
// are read first next time, and a vanished group is created again.
func (r *Relay) fail(p *pass, o stock.Outbox, err error) {
	r.suspect[o] = true
	if stock.IsNoGroup(err) {
		// Redis lost the stream and its group: create it again on
		// the next pass.
		delete(r.groups, o)
	}
	p.failed[o] = true
	p.errs = append(p.errs, err)
}

// outboxes are the outboxes a pass visits: every slot group's active set,
// read once per ScanEvery, plus those this process wrote to since. The
// first pass seeds the active sets (see seed).
func (r *Relay) outboxes(ctx context.Context) ([]stock.Outbox, error) {
	if !r.seeded {
		if err := r.seed(ctx); err != nil {
			return nil, err
		}
		r.seeded = true
	}
	if time.Since(r.scannedAt) >= r.cfg.ScanEvery {
		all, err := r.st.ActiveOutboxes(ctx)
		if err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
		r.scannedAt = time.Now()
		clear(r.known)
		for _, o := range all {
			r.known[o] = true
		}
	}
	for _, o := range r.st.TakeTouched() {
		r.known[o] = true
	}
	outboxes := make([]stock.Outbox, 0, len(r.known))
	for o := range r.known {
		outboxes = append(outboxes, o)
	}
	return outboxes, nil
}

// drainNew reads the new entries of every outbox that has not failed in
// one pipelined round trip and publishes them in one send, round after
// round while some outbox gave a full batch (at most maxBatches rounds, so
// a pass ends).
func (r *Relay) drainNew(ctx context.Context, p *pass, outboxes []stock.Outbox) {
	var open []stock.Outbox
	for _, o := range outboxes {
		if !p.failed[o] {
			open = append(open, o)
		}
	}
	for round := 0; round < maxBatches && len(open) > 0 && ctx.Err() == nil; round++ {
		batches, rerrs := r.st.ReadOutboxes(ctx, open, r.cfg.Group, r.cfg.Consumer, r.cfg.BatchSize)
		parts := map[stock.Outbox][]stock.Reservation{}
		var next []stock.Outbox
		for i, o := range open {
			if rerrs[i] != nil {
				r.fail(p, o, fmt.Errorf("relay: %w", rerrs[i]))
				continue
			}
			if len(batches[i]) > 0 {
				parts[o] = batches[i]
			}
			if int64(len(batches[i])) >= r.cfg.BatchSize {
				next = append(next, o)
			}
		}
		if len(parts) == 0 {
			return
		}
		if err := r.publishAll(ctx, parts); err != nil {
			for o := range parts {
				p.failed[o] = true
			}
			p.errs = append(p.errs, err)
			return
		}
		for o, b := range parts {
			p.add(o, len(b))
		}
		open = next
	}
}

// settle ends a pass: the backlog series of an item that sent shows (see
// refresh), and, when forget is set, an outbox that sent nothing and holds
// nothing leaves the active set.
func (r *Relay) settle(ctx context.Context, p *pass, outboxes []stock.Outbox, forget bool) {
	for _, o := range outboxes {
		k := p.sent[o]
		if k > 0 {
			// Seen with a backlog: its series shows until backlogKeep after
			// it drained, however fast it drained.
			if _, ok := r.gauged[o.ItemID]; !ok {
				r.backlog.WithLabelValues(strconv.FormatInt(o.ItemID, 10)).Set(0)
			}
			r.gauged[o.ItemID] = time.Now()
		}
		if forget && k == 0 && !p.failed[o] && len(r.retry[o]) == 0 {
			if gone, err := r.st.ForgetIfIdle(ctx, o); err == nil && gone {
				delete(r.groups, o)
				delete(r.known, o)
			}
		}
	}
}

// seed adds every shard of every item warmed in Redis to the active set:
// outboxes written before the set existed are relayed too.
func (r *Relay) seed(ctx context.Context) error {
	items, err := r.st.Items(ctx)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	var all []stock.Outbox
	for _, id := range items {
		n, err := r.cfg.Shards(ctx, id)
		if err != nil {
			r.log.Warn("relay: shards of item", "item", id, "err", err)
			continue
		}
		for sh := range n {
			all = append(all, stock.OutboxOf(id, sh, n))
		}
	}
	for chunk := range slices.Chunk(all, 1000) {
		if err := r.st.MarkActive(ctx, chunk); err != nil {
			return fmt.Errorf("relay: seed active outboxes: %w", err)
		}
	}
	return nil
}

// refresh sets the backlog gauge from the active outboxes; an item with
// none has no backlog and loses its series. Failures only leave stale
// values; the pass itself reports Redis errors.
func (r *Relay) refresh(ctx context.Context, outboxes []stock.Outbox) {
	sums := map[int64]int64{}
	lens, err := r.st.OutboxLens(ctx, outboxes)
	if err != nil {
		r.log.Error("relay: outbox backlog", "err", err)
		return
	}
	for i, o := range outboxes {
		sums[o.ItemID] += lens[i]
	}
	now := time.Now()
	for id, sum := range sums {
		r.backlog.WithLabelValues(strconv.FormatInt(id, 10)).Set(float64(sum))
		r.gauged[id] = now
	}
	for id, seen := range r.gauged {
		if _, ok := sums[id]; ok {
			continue
		}
		// Drained: 0 for a while (the dashboard shows the sale settle),
		// then the series goes.
		if now.Sub(seen) < backlogKeep {
			r.backlog.WithLabelValues(strconv.FormatInt(id, 10)).Set(0)
			continue
		}
		r.backlog.DeleteLabelValues(strconv.FormatInt(id, 10))
		delete(r.gauged, id)
	}
}

// backlogKeep is how long a drained item keeps its backlog series at 0.
const backlogKeep = 15 * time.Minute

// prepare does the rare per-outbox work of a pass (see DrainOnce): it makes
// sure the consumer group exists, republishes this relay's own pending
// entries after a failed read and a batch Kafka did not take, takes over
// entries of a crashed relay (idle for ClaimIdle) when claim is set, and
// removes the consumers of relays gone for ClaimIdle when prune is set.
func (r *Relay) prepare(ctx context.Context, o stock.Outbox, claim, prune bool) (int, error) {
	if !r.groups[o] {
		if err := r.st.EnsureGroup(ctx, o, r.cfg.Group); err != nil {
			return 0, fmt.Errorf("relay: %w", err)
		}
		r.groups[o] = true
	}
	sent := 0
	if r.suspect[o] {
		own, err := r.st.ReadOwnPending(ctx, o, r.cfg.Group, r.cfg.Consumer, r.cfg.BatchSize)
		if err != nil {
			return 0, fmt.Errorf("relay: %w", err)
		}
		delete(r.suspect, o)
		if len(own) > 0 {
			if err := r.publish(ctx, o, own); err != nil {
				return 0, err
			}
			sent += len(own)
		}
	}
	if b := r.retry[o]; len(b) > 0 {
		delete(r.retry, o)
		if err := r.publish(ctx, o, b); err != nil {
			return sent, err
		}
		sent += len(b)
	}
	if claim {
		k, err := r.claim(ctx, o)
		sent += k
		if err != nil {
			return sent, err
		}
	}
	if prune {
		// After the claim: the consumers of relays that died hold nothing
		// once their entries were taken over. Every relay start names a
		// new consumer, which would otherwise stay in the group for good.
		// A failure only leaves them for the next time.
		if _, err := r.st.PruneConsumers(ctx, o, r.cfg.Group, r.cfg.Consumer, r.cfg.ClaimIdle); err != nil {
			r.log.Warn("relay: prune consumers", "err", err)
		}
	}
	return sent, nil
}

// claim takes over and publishes the entries of a crashed relay (the
// oldest), until a short page or for at most maxBatches pages.
func (r *Relay) claim(ctx context.Context, o stock.Outbox) (int, error) {
	sent := 0
	for range maxBatches {
		b, err := r.st.ClaimOutbox(ctx, o, r.cfg.Group, r.cfg.Consumer, r.cfg.ClaimIdle, r.cfg.BatchSize)
		if err != nil {
			return sent, fmt.Errorf("relay: %w", err)
		}
		if len(b) > 0 {
			if err := r.publish(ctx, o, b); err != nil {
				return sent, err
			}
			sent += len(b)
		}
		// A claimed page may come back short yet have a next page
		// (deleted entries are dropped from it); the next pass gets it.
		if int64(len(b)) < r.cfg.BatchSize {
			break
		}
	}
	return sent, nil
}

// brokenEntry logs and counts an outbox entry that is not a reservation,
// once per entry (a relay meets it again each ClaimIdle, when it takes it
// over): written only by our scripts, it is a bug or a hand-made entry,
// and stays in its stream for an operator.
func (r *Relay) brokenEntry(b stock.BrokenEntry) {
	r.brokenMu.Lock()
	defer r.brokenMu.Unlock()
	key := b.Stream + " " + b.ID
	if _, ok := r.brokenSeen[key]; ok {
		return
	}
	if len(r.brokenSeen) >= maxBrokenSeen {
		clear(r.brokenSeen) // bounded; an entry logged before may be logged again
	}
	r.brokenSeen[key] = struct{}{}
	r.broken.Inc()
	r.log.Error("relay: broken outbox entry left in its stream, not published", "stream", b.Stream, "id", b.ID, "err", b.Err)
}

// maxBrokenSeen bounds the broken entries a relay remembers having logged.
const maxBrokenSeen = 10000

// publish sends a batch in one call. The entries stay in the outbox,
// pending for this relay, until the writer stores them; a batch Kafka did
// not take is kept for a retry. A producer that keeps failing is renewed.
func (r *Relay) publish(ctx context.Context, o stock.Outbox, b []stock.Reservation) error {
	return r.publishAll(ctx, map[stock.Outbox][]stock.Reservation{o: b})
}

// publishAll is publish of the batches of several outboxes in one send.
func (r *Relay) publishAll(ctx context.Context, parts map[stock.Outbox][]stock.Reservation) error {
	var msgs []*sarama.ProducerMessage
	for _, b := range parts {
		for _, res := range b {
			key, value := EncodeReservation(res)
			msgs = append(msgs, &sarama.ProducerMessage{Topic: r.cfg.Topic, Key: sarama.ByteEncoder(key), Value: sarama.ByteEncoder(value)})
		}
	}
	start := time.Now()
	err := r.producer.SendMessages(msgs)
	r.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		// Some messages may have landed; sending them all again only
		// makes duplicates, which the writer ignores.
		for o, b := range parts {
			r.retry[o] = b
		}
		r.renew(ctx)
		return fmt.Errorf("relay: publish %d reservations of %d outboxes: %w", len(msgs), len(parts), err)
	}
	r.failingSince = time.Time{}
	r.published.Add(float64(len(msgs)))
	return nil
}

// renew replaces the producer once publishing failed for RenewAfter, and
// then at most once per RenewAfter.
func (r *Relay) renew(ctx context.Context) {
	now := time.Now()
	if r.failingSince.IsZero() {
		r.failingSince = now
	}
	if r.cfg.Renew == nil || now.Sub(r.failingSince) < r.cfg.RenewAfter || now.Sub(r.renewedAt) < r.cfg.RenewAfter {
		return
	}
	r.renewedAt = now
	p, err := r.cfg.Renew(ctx)
	if err != nil {
		r.log.Warn("relay: renew producer", "err", err)
		return
	}
	old := r.producer
	r.producer = p
	if err := old.Close(); err != nil {
		r.log.Warn("relay: close old producer", "err", err)
	}
	r.log.Info("relay: producer renewed")
}

// Producer is the producer the relay publishes with now.
func (r *Relay) Producer() sarama.SyncProducer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.producer
}
