package stock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Reservation is one accepted purchase as recorded in a shard's outbox: the
// durable promise that an order will exist.
type Reservation struct {
	// StreamID is the outbox entry id, needed to acknowledge it.
	StreamID string
	OrderID  int64
	ItemID   int64
	UserID   int64
	// Shard is the shard the unit came from; Home is the buyer's home shard.
	Shard int
	Home  int
	At    time.Time
	// SlotGroup is the slot group of the outbox it was read from.
	SlotGroup int
}

// parseReservation reads an outbox entry (see records.go).
func parseReservation(m redis.XMessage) (Reservation, error) {
	r := Reservation{StreamID: m.ID}
	var err error
	var sh, home, at int64
	for _, f := range []struct {
		k string
		p *int64
	}{{outOrder, &r.OrderID}, {outItem, &r.ItemID}, {outUser, &r.UserID}, {outShard, &sh}, {outHome, &home}, {outAt, &at}} {
		v, ok := m.Values[f.k].(string)
		if !ok {
			return r, fmt.Errorf("outbox entry %s: missing %q", m.ID, f.k)
		}
		if *f.p, err = strconv.ParseInt(v, 10, 64); err != nil {
			return r, fmt.Errorf("outbox entry %s: field %q: %w", m.ID, f.k, err)
		}
	}
	r.Shard, r.Home, r.At = int(sh), int(home), time.UnixMilli(at)
	return r, nil
}

// parseAll reads the reservations of entries of outbox o. A broken entry
// (written only by our scripts, so a bug or a hand-made entry) is kept in
// the stream for inspection rather than published; when report is set, a
// consumer-group read met it and the OnBrokenEntry func hears of it.
func (s *Store) parseAll(o Outbox, msgs []redis.XMessage, report bool) []Reservation {
	out := make([]Reservation, 0, len(msgs))
	for _, m := range msgs {
		if m.Values == nil {
			continue // deleted while pending
		}
		r, err := parseReservation(m)
		if err != nil {
			if f := s.broken.Load(); report && f != nil {
				(*f)(BrokenEntry{Outbox: o, Stream: s.outboxKey(o), ID: m.ID, Err: err})
			}
			continue
		}
		r.SlotGroup = o.SlotGroup
		out = append(out, r)
	}
	return out
}

// Outbox addresses one shard's reservation stream for a consumer group.
type Outbox struct {
	ItemID int64
	Shard  int
	// SlotGroup is the shard's slot group (see OutboxOf).
	SlotGroup int
}

// OutboxOf is the outbox of shard of an item with shards shards.
func OutboxOf(itemID int64, shard, shards int) Outbox {
	return Outbox{ItemID: itemID, Shard: shard, SlotGroup: ShardGroup(itemID, shard, shards)}
}

func (s *Store) outboxKey(o Outbox) string { return s.keysIn(o.SlotGroup, o.ItemID, o.Shard).Outbox() }

// EnsureGroup creates the consumer group of the outbox, reading from its
// first entry, if it does not exist yet.
func (s *Store) EnsureGroup(ctx context.Context, o Outbox, group string) error {
	err := s.rdb.XGroupCreateMkStream(ctx, s.outboxKey(o), group, "0").Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return fmt.Errorf("create outbox group %d/%d: %w", o.ItemID, o.Shard, err)
	}
	return nil
}

// ReadOutbox returns up to count reservations never delivered to group.
func (s *Store) ReadOutbox(ctx context.Context, o Outbox, group, consumer string, count int64) ([]Reservation, error) {
	res, errs := s.ReadOutboxes(ctx, []Outbox{o}, group, consumer, count)
	return res[0], errs[0]
}

// ReadOutboxes is ReadOutbox of several outboxes in one pipeline (on a
// cluster, one round trip per master). It returns each outbox's batch and
// error, in the order of os.
func (s *Store) ReadOutboxes(ctx context.Context, os []Outbox, group, consumer string, count int64) ([][]Reservation, []error) {
	out := make([][]Reservation, len(os))
	errs := make([]error, len(os))
	if len(os) == 0 {
		return out, errs
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.XStreamSliceCmd, len(os))
	for i, o := range os {
		cmds[i] = pipe.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: group, Consumer: consumer, Streams: []string{s.outboxKey(o), ">"},
			Count: count, Block: -1,
		})
	}
	pipe.Exec(ctx) // errors are per command
	for i, c := range cmds {
		res, err := c.Result()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			errs[i] = fmt.Errorf("read outbox %d/%d: %w", os[i].ItemID, os[i].Shard, err)
		case len(res) > 0:
			out[i] = s.parseAll(os[i], res[0].Messages, true)
		}
	}
	return out, errs
}

// ReadOwnPending returns up to count reservations delivered to consumer and
// not acknowledged yet (its own pending entries, from the first). A relay
// reads them after losing its connection: entries Redis delivered in a
// reply that never arrived would otherwise wait for ClaimOutbox's idle time.
func (s *Store) ReadOwnPending(ctx context.Context, o Outbox, group, consumer string, count int64) ([]Reservation, error) {
	res, err := s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: group, Consumer: consumer, Streams: []string{s.outboxKey(o), "0"},
		Count: count, Block: -1,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read own pending %d/%d: %w", o.ItemID, o.Shard, err)
	}
	if len(res) == 0 {
		return nil, nil
	}
	return s.parseAll(o, res[0].Messages, true), nil
}

// ClaimOutbox takes over reservations delivered to a consumer that has not
// acknowledged them for minIdle (a relay that crashed before Kafka acked).
func (s *Store) ClaimOutbox(ctx context.Context, o Outbox, group, consumer string, minIdle time.Duration, count int64) ([]Reservation, error) {
	msgs, _, err := s.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: s.outboxKey(o), Group: group, Consumer: consumer,
		MinIdle: minIdle, Start: "0-0", Count: count,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("claim outbox %d/%d: %w", o.ItemID, o.Shard, err)
	}
	return s.parseAll(o, msgs, true), nil
}

// IsNoGroup reports whether err says the outbox stream or its consumer group
// is gone (Redis lost its data): the group must be created again.
func IsNoGroup(err error) bool { return redis.HasErrorPrefix(err, "NOGROUP") }

// AckOutbox removes reservations from the outbox. Call it only once MySQL
// stored their orders: until then the outbox holds the promise (a broker
// that loses its data loses nothing that is not still here).
func (s *Store) AckOutbox(ctx context.Context, o Outbox, group string, streamIDs ...string) error {
	if len(streamIDs) == 0 {
		return nil
	}
	key := s.outboxKey(o)
	pipe := s.rdb.TxPipeline()
	pipe.XAck(ctx, key, group, streamIDs...)
	pipe.XDel(ctx, key, streamIDs...)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("ack outbox %d/%d: %w", o.ItemID, o.Shard, err)
	}
	return nil
}

// OutboxLen is the number of reservations in the outbox not yet handed to
// Kafka.
func (s *Store) OutboxLen(ctx context.Context, o Outbox) (int64, error) {
	n, err := s.rdb.XLen(ctx, s.outboxKey(o)).Result()
	if err != nil {
		return 0, fmt.Errorf("outbox length %d/%d: %w", o.ItemID, o.Shard, err)
	}
	return n, nil
}

// OutboxLens is OutboxLen of several outboxes in one pipeline.
func (s *Store) OutboxLens(ctx context.Context, os []Outbox) ([]int64, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(os))
	for i, o := range os {
		cmds[i] = pipe.XLen(ctx, s.outboxKey(o))
	}
	if len(os) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("outbox lengths: %w", err)
		}
	}
	out := make([]int64, len(os))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}

// Entry names one outbox entry: the shard's outbox and the entry's id.
type Entry struct {
	ItemID    int64
	Shard     int
	SlotGroup int
	StreamID  string
}

// AckEntries removes stored reservations from their outboxes, in one round
// trip for all of them. Entries that are gone already (acknowledged before,
// or lost with Redis) are skipped by Redis.
func (s *Store) AckEntries(ctx context.Context, group string, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	by := map[Outbox][]string{}
	for _, e := range entries {
		if e.StreamID == "" {
			continue
		}
		o := Outbox{ItemID: e.ItemID, Shard: e.Shard, SlotGroup: e.SlotGroup}
		by[o] = append(by[o], e.StreamID)
	}
	pipe := s.rdb.Pipeline()
	for o, ids := range by {
		pipe.XAck(ctx, s.outboxKey(o), group, ids...)
		pipe.XDel(ctx, s.outboxKey(o), ids...)
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		// A stream whose group vanished (Redis lost it) has nothing to ack;
		// its entries are gone or will be read anew.
		for _, c := range cmds {
			if c.Err() != nil && !IsNoGroup(c.Err()) {
				return fmt.Errorf("ack %d stored reservations: %w", len(entries), c.Err())
			}
		}
	}
	return nil
}

// PendingReservations lists every reservation still in the outbox of the
// item's shards (used to find orders not yet in MySQL, and by rebuild).
func (s *Store) PendingReservations(ctx context.Context, itemID int64, shards int) ([]Reservation, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.XMessageSliceCmd, shards)
	for i := range cmds {
		cmds[i] = pipe.XRange(ctx, s.keys(itemID, i, shards).Outbox(), "-", "+")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("pending reservations of item %d: %w", itemID, err)
	}
	var out []Reservation
	for i, c := range cmds {
		out = append(out, s.parseAll(OutboxOf(itemID, i, shards), c.Val(), false)...)
	}
	return out, nil
}

// DropOutbox deletes a shard's outbox stream with its consumer group, as a
// Redis that lost its data would; for tests and operators.
func (s *Store) DropOutbox(ctx context.Context, itemID int64, shard, shards int) error {
	return s.rdb.Del(ctx, s.outboxKey(OutboxOf(itemID, shard, shards))).Err()
}

// ActiveOutboxes lists the outboxes that hold entries (or did until a
// moment ago): the only ones a relay needs to visit.
// It reads every slot group's set in one pipeline (on a cluster, one round
// trip per master): a fixed cost, whatever the number of items.
func (s *Store) ActiveOutboxes(ctx context.Context) ([]Outbox, error) {
	pipe := s.rdb.Pipeline()
	var cmds [Groups]*redis.StringSliceCmd
	for g := range Groups {
		cmds[g] = pipe.SMembers(ctx, s.activeKey(g))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("active outboxes: %w", err)
	}
	var out []Outbox
	for g, c := range cmds {
		for _, m := range c.Val() {
			a, b, ok := strings.Cut(m, ":")
			item, err1 := strconv.ParseInt(a, 10, 64)
			shard, err2 := strconv.Atoi(b)
			if !ok || err1 != nil || err2 != nil {
				continue
			}
			out = append(out, Outbox{ItemID: item, Shard: shard, SlotGroup: g})
		}
	}
	return out, nil
}

// MarkActive adds outboxes to the active set (a relay seeding it from every
// item once, for entries written before the set existed).
func (s *Store) MarkActive(ctx context.Context, os []Outbox) error {
	if len(os) == 0 {
		return nil
	}
	by := map[int][]any{}
	for _, o := range os {
		by[o.SlotGroup] = append(by[o.SlotGroup], outboxMember(o.ItemID, o.Shard))
	}
	pipe := s.rdb.Pipeline()
	for g, ms := range by {
		pipe.SAdd(ctx, s.activeKey(g), ms...)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// ForgetIfIdle drops the outbox from the active set if it holds nothing;
// it reports whether it did.
func (s *Store) ForgetIfIdle(ctx context.Context, o Outbox) (bool, error) {
	n, err := idleScript.Run(ctx, s.rdb, []string{s.outboxKey(o), s.activeKey(o.SlotGroup)}, outboxMember(o.ItemID, o.Shard)).Int()
	if err != nil {
		return false, fmt.Errorf("forget idle outbox %d/%d: %w", o.ItemID, o.Shard, err)
	}
	return n == 1, nil
}

// OutboxKey is the Redis key of the outbox stream, for logs and operators.
func (s *Store) OutboxKey(o Outbox) string { return s.outboxKey(o) }

// BrokenEntry is an outbox entry that is not a reservation (see records.go):
// it is never relayed, and stays in its stream for inspection.
type BrokenEntry struct {
	Outbox Outbox
	Stream string // the outbox's key
	ID     string // the entry's id
	Err    error  // what is wrong with it
}

// OnBrokenEntry has f called with every broken entry a consumer-group read
// (ReadOutbox(es), ReadOwnPending, ClaimOutbox) meets; the relay logs and
// counts them. One f per Store: a later call replaces an earlier one.
func (s *Store) OnBrokenEntry(f func(BrokenEntry)) { s.broken.Store(&f) }

// PruneConsumers removes from the outbox's consumer group the consumers
// that have no pending entry and have been idle for minIdle, except self.
// It is one script (prune.lua), so a consumer that reads entries meanwhile
// is never removed with them: those stay pending, for XAUTOCLAIM.
// A relay calls it for the outboxes it works on, so the consumers of
// restarted relays do not pile up (one per restart per outbox otherwise).
func (s *Store) PruneConsumers(ctx context.Context, o Outbox, group, self string, minIdle time.Duration) (int, error) {
	n, err := pruneScript.Run(ctx, s.rdb, []string{s.outboxKey(o)}, group, minIdle.Milliseconds(), self).Int()
	if err != nil {
		return 0, fmt.Errorf("prune consumers of outbox %d/%d: %w", o.ItemID, o.Shard, err)
	}
	return n, nil
}
