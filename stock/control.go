package stock

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// The operator's controls on a running sale, kept where the purchase
// script reads them: every shard of an item carries a sale state key in
// its own slot (Keys.State), which reserve.lua and issue.lua read in the
// same atomic call that would take a unit or make a token. So a pause or
// an end is honoured by every instance as soon as SetState returned, with
// no cache to wait for, and costs a purchase one GET of a key in the slot
// it already touches.
//
// State values: absent = on sale (as every item created before the
// controls); StatePaused; StateEnded.
const (
	StateOnSale = ""
	StatePaused = "p"
	StateEnded  = "e"
)

var (
	//go:embed lua/addunits.lua
	addUnitsLua    string
	addUnitsScript = redis.NewScript(addUnitsLua)
)

// ItemLease names the lease that serialises changes of an item's sale
// state (the operator's, and a rebuild writing it back), so the state the
// shards end with is the one MySQL ended with.
func ItemLease(itemID int64) string { return "item:" + strconv.FormatInt(itemID, 10) }

// State is the key of the shard's sale state.
func (k Keys) State() string { return k.prefix + ":" + k.tag + ":state" }

// Added is the set of stock additions applied to this shard.
func (k Keys) Added() string { return k.prefix + ":" + k.tag + ":added" }

// SetState writes the item's sale state on every shard, in one pipeline
// (one round trip per master). When it returns nil, every purchase and
// token issue that starts after it sees the state. A failure may have
// written some shards: the caller retries (the write is idempotent).
func (s *Store) SetState(ctx context.Context, itemID int64, shards int, state string) error {
	pipe := s.rdb.Pipeline()
	for i := range shards {
		k := s.keys(itemID, i, shards).State()
		if state == StateOnSale {
			pipe.Del(ctx, k)
		} else {
			pipe.Set(ctx, k, state, 0)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("set state %q of item %d: %w", state, itemID, err)
	}
	return nil
}

// AddUnits spreads units over the item's shards (Split) and adds each
// shard's part once per addition id (addunits.lua): a retry of the same
// addition adds nothing twice. It returns ErrNotReady if a shard key is
// missing (Redis lost it): that shard got nothing, and a rebuild from
// MySQL, whose stock holds the addition, counts it. The caller raises the
// MySQL stock first, so the units a purchase can take are never more than
// MySQL's guard allows.
func (s *Store) AddUnits(ctx context.Context, itemID int64, shards int, additionID, units int64) error {
	parts := Split(units, shards)
	for attempt := 0; ; attempt++ {
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.Cmd, 0, shards)
		for i, n := range parts {
			if n == 0 {
				continue
			}
			k := s.keys(itemID, i, shards)
			cmds = append(cmds, addUnitsScript.EvalSha(ctx, pipe, []string{k.Stock(), k.Added()}, additionID, n))
		}
		_, err := pipe.Exec(ctx)
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") && attempt == 0 {
			if lerr := addUnitsScript.Load(ctx, s.rdb).Err(); lerr != nil {
				return fmt.Errorf("add units to item %d: %w", itemID, lerr)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("add units to item %d: %w", itemID, err)
		}
		for _, c := range cmds {
			if n, _ := c.Int64(); n == codeNotReady {
				return fmt.Errorf("add units to item %d: %w", itemID, ErrNotReady)
			}
		}
		return nil
	}
}
