package lifecycle

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"seckill/app/testenv"
	"seckill/stock"
)

// BenchmarkCrowdMemory: the journal after a million accepted purchases
// (the app's ring: 1<<18 entries; bench/README.md, -benchtime 1x).
func BenchmarkCrowdMemory(b *testing.B) {
	const crowd = 1_000_000
	b.Run("journal", func(b *testing.B) {
		testenv.CrowdMemory(b, crowd, func() func() int {
			j, err := NewJournal(1<<18, prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			at := time.Now()
			var tok [16]byte
			for i := range crowd {
				binary.LittleEndian.PutUint64(tok[:], uint64(i)+1)
				j.Add(stock.Restored{OrderID: int64(i) + 1, ItemID: 1, UserID: int64(i) + 1, Shards: 8,
					Token: stock.TokenString(tok), At: at})
			}
			return func() int { return len(j.ring) + len(j.other) }
		})
	})
}
