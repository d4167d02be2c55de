package stock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// restockResync is how often WatchRestock forgets every local sold-out flag
// even without a notification: the safety net for a notification that was
// dropped, or a flag stored by a purchase that saw the shards empty just
// before the units came back. One purchase call re-learns a true flag.
const restockResync = 30 * time.Second

// restockChannel has a hash tag: on a cluster the notices are sharded
// pub/sub (SPUBLISH/SSUBSCRIBE) on the one master of its slot, so they
// arrive in the order they were sent.
func (s *Store) restockChannel() string { return s.prefix + ":{meta}:restock" }

// cluster is the client as a cluster client, if it is one.
func (s *Store) cluster() (*redis.ClusterClient, bool) {
	c, ok := s.rdb.(*redis.ClusterClient)
	return c, ok
}

// PublishRestock tells every instance sharing this Redis that units of the
// item came back, so they clear their local sold-out flag. Call it after the
// units are in the shards.
func (s *Store) PublishRestock(ctx context.Context, itemID int64) error {
	publish := s.rdb.Publish
	if _, ok := s.cluster(); ok {
		publish = s.rdb.SPublish
	}
	if err := publish(ctx, s.restockChannel(), itemID).Err(); err != nil {
		return fmt.Errorf("publish restock of item %d: %w", itemID, err)
	}
	return nil
}

// WatchRestock clears the local sold-out flag of every item named by
// PublishRestock, until ctx is done; then it returns nil. go-redis
// reconnects and resubscribes after a broken connection. A notification
// published while the subscription was down is lost, so every
// (re)subscription clears all local flags: they are only a cache, re-learned
// by one purchase call each.
func (s *Store) WatchRestock(ctx context.Context) error {
	return s.watchRestock(ctx, restockResync)
}

func (s *Store) watchRestock(ctx context.Context, resync time.Duration) error {
	var ps *redis.PubSub
	if c, ok := s.cluster(); ok {
		ps = c.SSubscribe(ctx, s.restockChannel())
	} else {
		ps = s.rdb.Subscribe(ctx, s.restockChannel())
	}
	defer ps.Close()
	// The channel reports subscription confirmations too: each one, the
	// first and every one after a reconnect, is a possible gap to cover.
	ch := ps.ChannelWithSubscriptions()
	tick := time.NewTicker(resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			s.clearAllSoldOut()
		case msg, ok := <-ch:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("watch restock: subscription closed")
			}
			switch m := msg.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" || m.Kind == "ssubscribe" {
					s.clearAllSoldOut()
				}
			case *redis.Message:
				id, err := strconv.ParseInt(m.Payload, 10, 64)
				if err != nil {
					// Not ours; clearing everything is the safe answer.
					s.clearAllSoldOut()
					continue
				}
				s.ClearSoldOut(id)
			}
		}
	}
}

// clearAllSoldOut forgets every local sold-out flag.
func (s *Store) clearAllSoldOut() {
	s.restocks.Add(1)
	s.soldOut.Clear()
}
