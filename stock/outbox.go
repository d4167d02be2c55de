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
}

func parseReservation(m redis.XMessage) (Reservation, error) {
	r := Reservation{StreamID: m.ID}
	num := func(k string) (int64, error) {
		v, ok := m.Values[k].(string)
		if !ok {
			return 0, fmt.Errorf("outbox entry %s: missing %q", m.ID, k)
		}
		return strconv.ParseInt(v, 10, 64)
	}
	var err error
	var sh, home, at int64
	for _, f := range []struct {
		k string
		p *int64
	}{{"o", &r.OrderID}, {"i", &r.ItemID}, {"u", &r.UserID}, {"s", &sh}, {"h", &home}, {"t", &at}} {
		if *f.p, err = num(f.k); err != nil {
			return r, err
		}
	}
	r.Shard, r.Home, r.At = int(sh), int(home), time.UnixMilli(at)
	return r, nil
}

func parseAll(msgs []redis.XMessage) []Reservation {
	out := make([]Reservation, 0, len(msgs))
	for _, m := range msgs {
		if m.Values == nil {
			continue // deleted while pending
		}
		r, err := parseReservation(m)
		if err != nil {
			// Written only by our scripts; a broken entry is kept for
			// inspection rather than published.
			continue
		}
		out = append(out, r)
	}
	return out
}

// Outbox addresses one shard's reservation stream for a consumer group.
type Outbox struct {
	ItemID int64
	Shard  int
}

func (s *Store) outboxKey(o Outbox) string { return s.keys(o.ItemID, o.Shard).Outbox() }

// EnsureGroup creates the consumer group of the outbox, reading from its
// first entry, if it does not exist yet.
func (s *Store) EnsureGroup(ctx context.Context, o Outbox, group string) error {
	err := s.rdb.XGroupCreateMkStream(ctx, s.outboxKey(o), group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create outbox group %d/%d: %w", o.ItemID, o.Shard, err)
	}
	return nil
}

// ReadOutbox returns up to count reservations never delivered to group.
func (s *Store) ReadOutbox(ctx context.Context, o Outbox, group, consumer string, count int64) ([]Reservation, error) {
	res, err := s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: group, Consumer: consumer, Streams: []string{s.outboxKey(o), ">"},
		Count: count, Block: -1,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read outbox %d/%d: %w", o.ItemID, o.Shard, err)
	}
	if len(res) == 0 {
		return nil, nil
	}
	return parseAll(res[0].Messages), nil
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
	return parseAll(msgs), nil
}

// AckOutbox removes reservations from the outbox. Call it only after Kafka
// acknowledged them: from then on Kafka holds the promise.
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

// PendingReservations lists every reservation still in the outbox of the
// item's shards (used to find orders not yet in MySQL, and by rebuild).
func (s *Store) PendingReservations(ctx context.Context, itemID int64, shards int) ([]Reservation, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.XMessageSliceCmd, shards)
	for i := range cmds {
		cmds[i] = pipe.XRange(ctx, s.keys(itemID, i).Outbox(), "-", "+")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("pending reservations of item %d: %w", itemID, err)
	}
	var out []Reservation
	for _, c := range cmds {
		out = append(out, parseAll(c.Val())...)
	}
	return out, nil
}

func (s *Store) inFlightKey(orderID int64) string {
	return s.prefix + ":inflight:" + strconv.FormatInt(orderID, 10)
}

// MarkInFlight records reservations that were handed to Kafka, so their
// orders can still be found (as pending) until the writer stores them.
// Call it before AckOutbox: at every moment an accepted order is in the
// outbox, marked in flight, or in MySQL. Marks expire after ttl.
func (s *Store) MarkInFlight(ctx context.Context, rs []Reservation, ttl time.Duration) error {
	if len(rs) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	for _, r := range rs {
		pipe.Set(ctx, s.inFlightKey(r.OrderID), strconv.FormatInt(r.ItemID, 10)+":"+strconv.FormatInt(r.UserID, 10), ttl)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("mark %d reservations in flight: %w", len(rs), err)
	}
	return nil
}

// InFlight returns the item and buyer of an order handed to Kafka and not
// yet known to be stored; ok is false if there is no such mark.
func (s *Store) InFlight(ctx context.Context, orderID int64) (itemID, userID int64, ok bool, err error) {
	v, err := s.rdb.Get(ctx, s.inFlightKey(orderID)).Result()
	if errors.Is(err, redis.Nil) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, fmt.Errorf("order %d in flight: %w", orderID, err)
	}
	item, user, found := strings.Cut(v, ":")
	if !found {
		return 0, 0, false, nil
	}
	if itemID, err = strconv.ParseInt(item, 10, 64); err != nil {
		return 0, 0, false, nil
	}
	if userID, err = strconv.ParseInt(user, 10, 64); err != nil {
		return 0, 0, false, nil
	}
	return itemID, userID, true, nil
}
