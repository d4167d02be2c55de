package orderid

import (
	"testing"

	"seckill/stock"
)

// The layout is bwmarrin/snowflake's with a 14-bit node field
// (group<<8 | node) and 8 step bits, which ids already stored use, and
// stock reads the group where Make writes it.
func TestLayout(t *testing.T) {
	// Made by bwmarrin/snowflake v0.3.0 (NodeBits 14, StepBits 8, its
	// default Epoch), node 37<<8|0x5a, as the product made ids before
	// this package: ID.Time() 1796610021644, step 0.
	const golden int64 = 2129762910680209920
	if got := Make(1796610021644, 37, 0x5a, 0); got != golden {
		t.Fatalf("Make = %d, want bwmarrin/snowflake's %d", got, golden)
	}
	if Millis(golden) != 1796610021644 {
		t.Fatalf("Millis = %d", Millis(golden))
	}
	if Groups != stock.Groups {
		t.Fatalf("Groups %d, stock.Groups %d", Groups, stock.Groups)
	}
	for g := range Groups {
		for _, node := range []int{0, 1, 0x5a, Nodes - 1} {
			for _, seq := range []int{0, 1, maxSeq} {
				id := Make(base, g, node, seq)
				if got := stock.OrderGroup(id); got != g {
					t.Fatalf("Make(g=%d, node=%d, seq=%d) reads as group %d", g, node, seq, got)
				}
				if stock.WithGroup(id, g) != id {
					t.Fatalf("stock.WithGroup moves other bits of %d", id)
				}
				if id <= 0 || Millis(id) != base {
					t.Fatalf("id %d: ms %d", id, Millis(id))
				}
			}
		}
	}
}
