package handler

import (
	"encoding/binary"
	"testing"

	"seckill/app/testenv"
	"seckill/order/sale"
)

// BenchmarkCrowdMemory: the memory of verified user tokens after a million
// distinct buyers each sent one (bench/README.md, -benchtime 1x).
func BenchmarkCrowdMemory(b *testing.B) {
	const crowd = 1_000_000
	b.Run("verified-users", func(b *testing.B) {
		testenv.CrowdMemory(b, crowd, func() func() int {
			m := sale.NewRecent[tokenDigest, verifiedUser](verifiedUserMemory)
			var d tokenDigest
			for i := range crowd {
				binary.LittleEndian.PutUint64(d[:], uint64(i)+1)
				m.Add(d, verifiedUser{id: int64(i) + 1, exp: 1})
			}
			return func() int {
				held := 0
				for i := range crowd {
					binary.LittleEndian.PutUint64(d[:], uint64(i)+1)
					if _, ok := m.Get(d); ok {
						held++
					}
				}
				return held
			}
		})
	})
}
