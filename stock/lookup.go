package stock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Accepted is a purchase Redis accepted whose order may not be in MySQL yet.
type Accepted struct {
	ItemID int64
	// At is when the purchase was accepted.
	At time.Time
	// InProgress: the purchase is still falling through to other shards.
	InProgress bool
}

// LookupOrder finds an order the buyer was told about, in two reads
// whatever the number of items and shards: the order index entry written
// with the reservation, then the token it names, which keeps its answer for
// ResultTTL. ok is false if user has no such accepted purchase.
func (s *Store) LookupOrder(ctx context.Context, orderID, userID int64) (a Accepted, ok bool, err error) {
	v, err := s.rdb.Get(ctx, s.orderKey(orderID)).Result()
	if errors.Is(err, redis.Nil) {
		return Accepted{}, false, nil
	}
	if err != nil {
		return Accepted{}, false, fmt.Errorf("look up order %d: %w", orderID, err)
	}
	parts := strings.SplitN(v, ":", 4)
	if len(parts) != 4 {
		return Accepted{}, false, nil
	}
	item, err1 := strconv.ParseInt(parts[0], 10, 64)
	home, err2 := strconv.Atoi(parts[1])
	token := parts[2]
	at, err3 := strconv.ParseInt(parts[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || token == "" {
		return Accepted{}, false, nil
	}
	// The index entry lives in the group the id was made for, the home
	// shard's, so the token is there too.
	tok, err := s.rdb.HMGet(ctx, s.keysIn(OrderGroup(orderID), item, home).Token(token), tokUser, tokState, tokCode, tokOrder).Result()
	if err != nil {
		return Accepted{}, false, fmt.Errorf("look up order %d: %w", orderID, err)
	}
	str := func(i int) string { v, _ := tok[i].(string); return v }
	if str(0) != strconv.FormatInt(userID, 10) || str(3) != strconv.FormatInt(orderID, 10) {
		return Accepted{}, false, nil
	}
	switch {
	case str(1) == stateDone && str(2) == "0":
		return Accepted{ItemID: item, At: time.UnixMilli(at).UTC()}, true, nil
	case str(1) == stateClaimed:
		return Accepted{ItemID: item, At: time.UnixMilli(at).UTC(), InProgress: true}, true, nil
	}
	return Accepted{}, false, nil
}

// PeekOrder reads the order index entry of orderID and nothing else: the
// one read LookupOrder makes for an id that has none. It lets a caller
// that already knows the answer cost what a missing id costs.
func (s *Store) PeekOrder(ctx context.Context, orderID int64) error {
	if err := s.rdb.Get(ctx, s.orderKey(orderID)).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("look up order %d: %w", orderID, err)
	}
	return nil
}

// Claim is an open fall-through claim: a buyer's slot is counted on the
// home shard while the purchase looks for a unit on the other shards.
type Claim struct {
	ItemID  int64
	Home    int
	Token   string
	UserID  int64
	OrderID int64
	// Epoch is the claim's time (ms); a claim older than ClaimTimeout is
	// abandoned or stalled.
	Epoch int64
}

func parseMember(m string) (item int64, home int, token string, ok bool) {
	a, rest, ok1 := strings.Cut(m, ":")
	b, token, ok2 := strings.Cut(rest, ":")
	var err1, err2 error
	item, err1 = strconv.ParseInt(a, 10, 64)
	home, err2 = strconv.Atoi(b)
	return item, home, token, ok1 && ok2 && err1 == nil && err2 == nil && token != ""
}

// member is one entry of a group's claims index.
type member struct {
	group int
	name  string
}

// claims reads the claims named by index members, dropping the members of
// claims that are settled (or gone with their token).
func (s *Store) claims(ctx context.Context, members []member) ([]Claim, error) {
	if len(members) == 0 {
		return nil, nil
	}
	type read struct {
		c   Claim
		m   member
		cmd *redis.SliceCmd
	}
	var reads []read
	stale := map[int][]any{}
	pipe := s.rdb.Pipeline()
	for _, m := range members {
		item, home, token, ok := parseMember(m.name)
		if !ok {
			stale[m.group] = append(stale[m.group], m.name)
			continue
		}
		reads = append(reads, read{Claim{ItemID: item, Home: home, Token: token}, m,
			pipe.HMGet(ctx, s.keysIn(m.group, item, home).Token(token), tokUser, tokState, tokOrder, tokEpoch)})
	}
	if len(reads) > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("read open claims: %w", err)
		}
	}
	var out []Claim
	for _, r := range reads {
		v := r.cmd.Val()
		str := func(i int) string { s, _ := v[i].(string); return s }
		c := r.c
		var err1, err2, err3 error
		c.UserID, err1 = strconv.ParseInt(str(0), 10, 64)
		c.OrderID, err2 = strconv.ParseInt(str(2), 10, 64)
		c.Epoch, err3 = strconv.ParseInt(str(3), 10, 64)
		if str(1) != stateClaimed || err1 != nil || err2 != nil || err3 != nil {
			stale[r.m.group] = append(stale[r.m.group], r.m.name)
			continue
		}
		out = append(out, c)
	}
	for g, names := range stale {
		s.rdb.ZRem(ctx, s.claimsKey(g), names...) // tidying only
	}
	return out, nil
}

// OpenClaims lists the item's open fall-through claims (rebuild counts the
// slots they hold). The index holds only claims not settled yet, so this
// reads few entries whatever the history.
func (s *Store) OpenClaims(ctx context.Context, itemID int64, shards int) ([]Claim, error) {
	var groups []int
	for i := range shards {
		if g := ShardGroup(itemID, i, shards); !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringSliceCmd, len(groups))
	for i, g := range groups {
		cmds[i] = pipe.ZRange(ctx, s.claimsKey(g), 0, -1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("open claims: %w", err)
	}
	prefix := strconv.FormatInt(itemID, 10) + ":"
	var mine []member
	for i, c := range cmds {
		for _, m := range c.Val() {
			if strings.HasPrefix(m, prefix) {
				mine = append(mine, member{groups[i], m})
			}
		}
	}
	return s.claims(ctx, mine)
}

// StaleClaims lists up to limit claims older than the claim timeout: their
// process died or stalls, and their buyer may never come back.
func (s *Store) StaleClaims(ctx context.Context, limit int64) ([]Claim, error) {
	before := time.Now().Add(-s.cfg.ClaimTimeout).UnixMilli()
	pipe := s.rdb.Pipeline()
	var cmds [Groups]*redis.StringSliceCmd
	for g := range Groups {
		cmds[g] = pipe.ZRangeByScore(ctx, s.claimsKey(g), &redis.ZRangeBy{
			Min: "-inf", Max: strconv.FormatInt(before, 10), Count: limit,
		})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("stale claims: %w", err)
	}
	var ms []member
	for g, c := range cmds {
		for _, m := range c.Val() {
			if int64(len(ms)) < limit {
				ms = append(ms, member{g, m})
			}
		}
	}
	return s.claims(ctx, ms)
}

// SettleClaim settles a stale claim as its buyer's replay would: fencing out
// the process that holds it, then finishing with the unit that process took
// or with one of its own, or as sold out. It returns the order id if the
// purchase ended with a unit; ErrPurchaseInProgress if someone else settles
// it right now.
func (s *Store) SettleClaim(ctx context.Context, c Claim, shards int) (int64, error) {
	p := Purchase{ItemID: c.ItemID, UserID: c.UserID, Shards: shards, Token: c.Token, OrderID: c.OrderID}
	return s.settleStale(ctx, p, c.Home, c.OrderID, c.Epoch, s.restocks.Load())
}

// OrderKnown reports whether Redis accepted an order under orderID (its
// order index entry exists), whoever bought it: one read. A payment
// provider's callback names no buyer; this tells an order accepted but not
// stored yet (retry) from an id never made.
func (s *Store) OrderKnown(ctx context.Context, orderID int64) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.orderKey(orderID)).Result()
	if err != nil {
		return false, fmt.Errorf("look up order %d: %w", orderID, err)
	}
	return n > 0, nil
}
