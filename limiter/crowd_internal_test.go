package limiter

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"seckill/app/testenv"
)

// BenchmarkCrowdMemory: the per-user buckets after a million distinct
// buyers were admitted once each within UserIdle (10 minutes by default):
// one bucket per buyer until the janitor finds it idle and full again
// (bench/README.md, -benchtime 1x).
func BenchmarkCrowdMemory(b *testing.B) {
	const crowd = 1_000_000
	b.Run("user-buckets", func(b *testing.B) {
		testenv.CrowdMemory(b, crowd, func() func() int {
			l, err := New(Config{GlobalRate: 1e9, GlobalBurst: 1e9, UserRate: 5, UserBurst: 5}, prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			for i := range crowd {
				release, err := l.Acquire(context.Background(), int64(i)+1)
				if err != nil {
					b.Fatal(err)
				}
				release()
			}
			return func() int {
				defer l.Close()
				return l.users.len()
			}
		})
	})
}
