package lifecycle

import (
	"reflect"
	"testing"

	"seckill/app/testenv"
)

// TestJournalHoldsNoPointers: the journal's ring is a quarter of a million
// entries; with the token as a string and the time as a time.Time the
// garbage collector scanned all of them on every cycle.
func TestJournalHoldsNoPointers(t *testing.T) {
	if p := testenv.PointerField(reflect.TypeFor[journalEntry]()); p != "" {
		t.Errorf("journalEntry holds a pointer (%s): the ring must be memory the GC need not scan", p)
	}
}
