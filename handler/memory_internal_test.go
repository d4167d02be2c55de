package handler

import (
	"reflect"
	"testing"

	"seckill/app/testenv"
)

// TestAnswerMemoryHoldsNoPointers: the memory of answers holds up to half
// a million entries, that of verified user tokens up to 131,072; with
// strings in the keys and an error and a time.Time in the values the
// garbage collector scanned all of them on every cycle of a sale (and the
// token strings kept their requests' header memory alive).
func TestAnswerMemoryHoldsNoPointers(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[acceptedKey](), reflect.TypeFor[answer](),
		reflect.TypeFor[tokenDigest](), reflect.TypeFor[verifiedUser]()} {
		if p := testenv.PointerField(typ); p != "" {
			t.Errorf("%v holds a pointer (%s): the answer memory must be memory the GC need not scan", typ, p)
		}
	}
}
