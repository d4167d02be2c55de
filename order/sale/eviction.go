package sale

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"seckill/stock"
)

// evictState is the last eviction check's finding: the error naming the
// policy of each master that may evict keys.
type evictState struct{ err error }

// SetEvicting records whether Redis may evict keys: err is nil when every
// master's policy is noeviction, else the error naming the offending
// policies. While set, purchases and token issues answer ErrRedisEvicts
// without touching Redis (a retried key's remembered answer still stands:
// it was given before).
func (s *Sale) SetEvicting(err error) {
	if err == nil {
		s.evicting.Store(nil)
		return
	}
	s.evicting.Store(&evictState{err})
}

// Evicting is why purchases are refused now because Redis may evict keys,
// or nil: what readiness reports.
func (s *Sale) Evicting() error {
	if e := s.evicting.Load(); e != nil {
		return e.err
	}
	return nil
}

// refusedForEviction is the hot path's test: one atomic load, no call.
func (s *Sale) refusedForEviction() bool { return s.evicting.Load() != nil }

// WatchEviction checks Redis's maxmemory-policy every interval (one call
// per master) until ctx ends, and stops purchases while it lets Redis evict
// keys (SetEvicting). A check that cannot read the policy (Redis
// unreachable) changes nothing: a Redis that does not answer fails the
// purchases by itself, and its policy is read again on the next tick.
func (s *Sale) WatchEviction(ctx context.Context, interval time.Duration, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		s.checkEviction(ctx, log)
	}
}

// checkEviction runs one check (see WatchEviction).
func (s *Sale) checkEviction(ctx context.Context, log *slog.Logger) {
	err := s.cfg.Stock.CheckNoEviction(ctx)
	was := s.Evicting()
	switch {
	case err == nil:
		if was != nil {
			log.Warn("redis no longer evicts keys: purchases resume")
		}
		s.SetEvicting(nil)
	case errors.Is(err, stock.ErrEvicting):
		if was == nil {
			log.Error("redis may evict keys: purchases and token issues answer 503 until its maxmemory-policy is noeviction", "err", err)
		}
		s.SetEvicting(err)
	case ctx.Err() == nil:
		log.Debug("eviction check", "err", err)
	}
}
