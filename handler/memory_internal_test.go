package handler

import (
	"reflect"
	"testing"

	"seckill/app/testenv"
)

// TestAnswerMemoryHoldsNoPointers: the memory of answers holds up to half
// a million entries; with a string in the key and an error in the value
// the garbage collector scanned all of them on every cycle of a sale.
func TestAnswerMemoryHoldsNoPointers(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[acceptedKey](), reflect.TypeFor[answer]()} {
		if p := testenv.PointerField(typ); p != "" {
			t.Errorf("%v holds a pointer (%s): the answer memory must be memory the GC need not scan", typ, p)
		}
	}
}
