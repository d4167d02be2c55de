package lifecycle

import (
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"seckill/app/testenv"
	"seckill/stock"
)

// TestJournalHoldsNoPointers: the journal's ring is a quarter of a million
// entries; with the token as a string and the time as a time.Time the
// garbage collector scanned all of them on every cycle.
func TestJournalHoldsNoPointers(t *testing.T) {
	if p := testenv.PointerField(reflect.TypeFor[journalEntry]()); p != "" {
		t.Errorf("journalEntry holds a pointer (%s): the ring must be memory the GC need not scan", p)
	}
}

// TestJournalKeepsWhatItWasGiven: entries come back as they were added,
// token IDs in stock.TokenString's form (kept as bytes) and any other (kept
// aside) alike, and an overwritten entry's token goes with it.
func TestJournalKeepsWhatItWasGiven(t *testing.T) {
	j, err := NewJournal(2, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	in := []stock.Restored{
		{OrderID: 1, ItemID: 2, UserID: 3, Home: 4, Shards: 8, Token: "0123456789abcdef0123456789abcdef", At: at},
		{OrderID: 5, ItemID: 6, UserID: 7, Home: 0, Shards: 1, Token: "Not-A-Hex-Token", At: at.Add(time.Millisecond)},
	}
	for _, r := range in {
		j.Add(r)
	}
	all := func(time.Time) bool { return true }
	got := j.entries(all)
	if len(got) != len(in) {
		t.Fatalf("got %d entries, want %d", len(got), len(in))
	}
	for i := range in {
		if g := got[i]; g.OrderID != in[i].OrderID || g.ItemID != in[i].ItemID || g.UserID != in[i].UserID ||
			g.Home != in[i].Home || g.Shards != in[i].Shards || g.Token != in[i].Token || !g.At.Equal(in[i].At) {
			t.Errorf("entry %d: got %+v, want %+v", i, g, in[i])
		}
	}
	// The ring wraps: the odd token's slot is taken by a plain one.
	j.Add(stock.Restored{OrderID: 8, ItemID: 6, UserID: 9, Shards: 1, Token: "fedcba9876543210fedcba9876543210", At: at})
	j.Add(stock.Restored{OrderID: 10, ItemID: 6, UserID: 11, Shards: 1, Token: "00000000000000000000000000000000", At: at})
	if len(j.other) != 0 {
		t.Errorf("%d tokens kept aside after their entries were overwritten, want 0", len(j.other))
	}
	for _, g := range j.entries(all) {
		if g.OrderID != 8 && g.OrderID != 10 {
			t.Errorf("entry of order %d still in a ring of 2 after 4 adds", g.OrderID)
		}
	}
}
