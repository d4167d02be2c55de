package order

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Journal remembers the purchases this instance accepted lately (order id,
// item, time), in a fixed-size ring, so that after Redis lost its data the
// instance can tell which of its 202s exist nowhere any more: neither in
// MySQL nor anywhere upstream once the pipeline has settled. Those are
// counted as lost (seckill_orders_lost_total) and logged: a promise broken
// by the chosen durability, never a silent one.
type Journal struct {
	mu   sync.Mutex
	ring []journalEntry
	next int
	full bool

	lost prometheus.Counter
}

type journalEntry struct {
	order, item int64
	at          time.Time
}

// NewJournal returns a Journal of size entries and registers its counter.
func NewJournal(size int, reg prometheus.Registerer) (*Journal, error) {
	j := &Journal{ring: make([]journalEntry, max(size, 1))}
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

// Add records an accepted purchase.
func (j *Journal) Add(orderID, itemID int64, at time.Time) {
	j.mu.Lock()
	j.ring[j.next] = journalEntry{orderID, itemID, at}
	j.next++
	if j.next == len(j.ring) {
		j.next, j.full = 0, true
	}
	j.mu.Unlock()
}

// before lists the remembered orders accepted before t.
func (j *Journal) before(t time.Time) []journalEntry {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := j.next
	if j.full {
		n = len(j.ring)
	}
	var out []journalEntry
	for _, e := range j.ring[:n] {
		if e.order != 0 && e.at.Before(t) {
			out = append(out, e)
		}
	}
	return out
}

// CountLost checks the orders accepted before cutoff (when Redis was found
// empty) against MySQL, once the rebuild after that loss is done, and counts
// and returns those missing.
func (j *Journal) CountLost(ctx context.Context, orders *Store, cutoff time.Time) ([]int64, error) {
	es := j.before(cutoff)
	ids := make([]int64, len(es))
	for i, e := range es {
		ids[i] = e.order
	}
	stored, err := orders.Stored(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("count lost orders: %w", err)
	}
	var lost []int64
	for _, id := range ids {
		if !stored[id] {
			lost = append(lost, id)
		}
	}
	j.lost.Add(float64(len(lost)))
	return lost, nil
}
