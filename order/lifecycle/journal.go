package lifecycle

import (
	"context"
	"fmt"
	"seckill/order"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"seckill/stock"
)

// Journal remembers the purchases this instance accepted lately, in a
// fixed-size ring. After Redis lost its data the instance puts them back
// (Restorable, stock.Restore) before the rebuild counts, so a 202 whose
// reservation had not reached MySQL still becomes an order and its key
// still answers 202. What exists nowhere even so once the rebuild is done
// (its instance died too, or it fell out of the ring) is counted as lost
// (seckill_orders_lost_total) and logged: never silent.
type Journal struct {
	mu   sync.Mutex
	ring []journalEntry
	next int
	full bool
	// other holds, by ring index, the token IDs that are not in
	// stock.TokenString's form (none but a caller's mistake); the ring
	// keeps the rest.
	other map[int]string

	lost prometheus.Counter
}

// journalEntry is a stock.Restored without pointers (the token as the 16
// bytes it stands for, the time as a number), so the ring, a quarter of a
// million entries, is memory the garbage collector never scans.
type journalEntry struct {
	orderID, itemID, userID int64
	at                      int64 // Unix nanoseconds
	home, shards            int32
	token                   [16]byte // stock.TokenBytes
}

func (e *journalEntry) restored(token string) stock.Restored {
	return stock.Restored{OrderID: e.orderID, ItemID: e.itemID, UserID: e.userID, Home: int(e.home), Shards: int(e.shards),
		Token: token, At: time.Unix(0, e.at)}
}

// NewJournal returns a Journal of size entries and registers its counter.
func NewJournal(size int, reg prometheus.Registerer) (*Journal, error) {
	j := &Journal{ring: make([]journalEntry, max(size, 1)), other: map[int]string{}}
	lost, err := registerShared(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "seckill_orders_lost_total",
		Help: "Accepted purchases (202) found in neither MySQL nor Redis after Redis lost its data: the durability setting did not cover them.",
	}))
	if err != nil {
		return nil, fmt.Errorf("new journal: %w", err)
	}
	j.lost = lost
	return j, nil
}

// Add records an accepted purchase (Reinject is ignored).
func (j *Journal) Add(r stock.Restored) {
	e := journalEntry{orderID: r.OrderID, itemID: r.ItemID, userID: r.UserID, at: r.At.UnixNano(),
		home: int32(r.Home), shards: int32(r.Shards)}
	tok, ok := stock.TokenBytes(r.Token)
	e.token = tok
	j.mu.Lock()
	j.ring[j.next] = e
	if !ok {
		j.other[j.next] = r.Token
	} else if len(j.other) > 0 {
		delete(j.other, j.next)
	}
	j.next++
	if j.next == len(j.ring) {
		j.next, j.full = 0, true
	}
	j.mu.Unlock()
}

// entries lists the remembered purchases whose accept time passes keep.
func (j *Journal) entries(keep func(at time.Time) bool) []stock.Restored {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := j.next
	if j.full {
		n = len(j.ring)
	}
	var out []stock.Restored
	for i := range j.ring[:n] {
		e := &j.ring[i]
		if e.orderID == 0 || !keep(time.Unix(0, e.at)) {
			continue
		}
		tok, odd := j.other[i]
		if !odd {
			tok = stock.TokenString(e.token)
		}
		out = append(out, e.restored(tok))
	}
	return out
}

// accounted returns which of the purchases MySQL holds, as an order or as a
// dead letter (refused).
func accounted(ctx context.Context, orders *order.Store, es []stock.Restored) (map[int64]bool, error) {
	ids := make([]int64, len(es))
	for i, e := range es {
		ids[i] = e.OrderID
	}
	stored, err := orders.Stored(ctx, ids)
	if err != nil {
		return nil, err
	}
	dead, err := orders.DeadLettered(ctx, ids)
	if err != nil {
		return nil, err
	}
	for id := range dead {
		stored[id] = true
	}
	return stored, nil
}

func before(t time.Time) func(time.Time) bool { return func(at time.Time) bool { return at.Before(t) } }

// Restorable lists the purchases accepted before cutoff, for stock.Restore:
// those in MySQL only get their token answer back, the others (neither
// stored nor dead-lettered) are reinjected.
func (j *Journal) Restorable(ctx context.Context, orders *order.Store, cutoff time.Time) ([]stock.Restored, error) {
	es := j.entries(before(cutoff))
	in, err := accounted(ctx, orders, es)
	if err != nil {
		return nil, fmt.Errorf("restorable purchases: %w", err)
	}
	for i := range es {
		es[i].Reinject = !in[es[i].OrderID]
	}
	return es, nil
}

// CountLost checks the orders accepted before cutoff (when Redis was found
// empty) against MySQL, once the rebuild after that loss is done, and counts
// and returns those missing.
func (j *Journal) CountLost(ctx context.Context, orders *order.Store, cutoff time.Time) ([]int64, error) {
	es := j.entries(before(cutoff))
	in, err := accounted(ctx, orders, es)
	if err != nil {
		return nil, fmt.Errorf("count lost orders: %w", err)
	}
	var lost []int64
	for _, e := range es {
		if !in[e.OrderID] {
			lost = append(lost, e.OrderID)
		}
	}
	j.lost.Add(float64(len(lost)))
	return lost, nil
}

// Since lists the purchases accepted at or after t that MySQL holds neither
// as orders nor as dead letters (candidates for what a Redis restart may
// have lost).
func (j *Journal) Since(ctx context.Context, orders *order.Store, t time.Time) ([]stock.Restored, error) {
	es := j.entries(func(at time.Time) bool { return !at.Before(t) })
	in, err := accounted(ctx, orders, es)
	if err != nil {
		return nil, fmt.Errorf("recent purchases: %w", err)
	}
	out := es[:0]
	for _, e := range es {
		if !in[e.OrderID] {
			out = append(out, e)
		}
	}
	return out, nil
}

// Lost counts accepted purchases found lost by other means (a restart that
// lost them after their stock was sold again).
func (j *Journal) Lost(n int) { j.lost.Add(float64(n)) }
