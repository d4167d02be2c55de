package stock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// ErrEvicting is a Redis that may evict keys: its maxmemory-policy is not
// noeviction. Such a Redis drops stock shards, outbox entries, purchase
// answers and buyers' counts when it fills up, which breaks every promise
// the store keeps (oversell, lost orders); the sale refuses it. The errors
// CheckNoEviction returns are *EvictingError, which match it (errors.Is).
var ErrEvicting = errors.New("redis may evict keys")

// NoEviction is the one maxmemory-policy the store can run on.
const NoEviction = "noeviction"

// MasterPolicy is the maxmemory-policy of one Redis server (a cluster's
// master).
type MasterPolicy struct {
	Addr   string
	Policy string
}

// EvictingError is a server whose policy lets it evict keys.
type EvictingError struct{ MasterPolicy }

func (e *EvictingError) Error() string {
	return fmt.Sprintf("redis %s: maxmemory-policy is %s; seckill needs %s: an evicting Redis drops stock shards, "+
		"outbox entries and purchase answers (oversell, lost orders)", e.Addr, e.Policy, NoEviction)
}

// Is makes every EvictingError match ErrEvicting.
func (e *EvictingError) Is(target error) bool { return target == ErrEvicting }

// EvictionPolicies reads the maxmemory-policy of the Redis server, or of
// every master of a cluster: one call each (CONFIG GET, or INFO memory where
// CONFIG is disabled, as on managed offerings).
func (s *Store) EvictionPolicies(ctx context.Context) ([]MasterPolicy, error) {
	c, ok := s.cluster()
	if !ok {
		addr := ""
		if one, ok := s.rdb.(*redis.Client); ok {
			addr = one.Options().Addr
		}
		p, err := policyOf(ctx, s.rdb)
		if err != nil {
			return nil, fmt.Errorf("redis %s: %w", addr, err)
		}
		return []MasterPolicy{{Addr: addr, Policy: p}}, nil
	}
	var mu sync.Mutex
	var out []MasterPolicy
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		p, err := policyOf(ctx, m)
		if err != nil {
			return fmt.Errorf("redis master %s: %w", m.Options().Addr, err)
		}
		mu.Lock()
		out = append(out, MasterPolicy{Addr: m.Options().Addr, Policy: p})
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CheckNoEviction reports a Redis that may evict keys: nil when every
// server's policy is noeviction; an *EvictingError (errors.Join of them, one
// per evicting master) matching ErrEvicting; or the error that kept a
// policy from being read.
func (s *Store) CheckNoEviction(ctx context.Context) error {
	ps, err := s.EvictionPolicies(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range ps {
		if p.Policy != NoEviction {
			errs = append(errs, &EvictingError{p})
		}
	}
	return errors.Join(errs...)
}

// policyOf is c's maxmemory-policy: CONFIG GET, or INFO memory's
// maxmemory_policy when the server refuses CONFIG (a Redis error reply, as
// managed offerings give; a connection error is returned as it is).
func policyOf(ctx context.Context, c redis.Cmdable) (string, error) {
	m, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
	if err == nil {
		if p, ok := m["maxmemory-policy"]; ok && p != "" {
			return strings.ToLower(p), nil
		}
	} else if !isReply(err) {
		return "", fmt.Errorf("config get maxmemory-policy: %w", err)
	}
	info, ierr := c.Info(ctx, "memory").Result()
	if ierr != nil {
		return "", fmt.Errorf("read maxmemory-policy: CONFIG GET: %v; INFO memory: %w", err, ierr)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "maxmemory_policy:"); ok && v != "" {
			return strings.ToLower(v), nil
		}
	}
	return "", fmt.Errorf("read maxmemory-policy: neither CONFIG GET (%v) nor INFO memory tells it", err)
}

// isReply reports whether err is an error reply of the server (the command
// was refused), not a failure to reach it.
func isReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, redis.Nil)
}
