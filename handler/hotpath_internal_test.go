package handler

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"seckill/app/testenv"
)

// TestUserMemoryHoldsNoPointers: the memory of verified user tokens holds
// up to 131,072 entries; with strings in the keys and a time.Time in the
// values the garbage collector scanned all of them on every cycle of a
// sale (the answer memory's own test is in package sale).
func TestUserMemoryHoldsNoPointers(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[tokenDigest](), reflect.TypeFor[verifiedUser]()} {
		if p := testenv.PointerField(typ); p != "" {
			t.Errorf("%v holds a pointer (%s): the answer memory must be memory the GC need not scan", typ, p)
		}
	}
}

// TestAcceptWritesThePurchaseView: the 202 body, written by hand, is what
// encoding/json makes of purchaseView, for any order id.
func TestAcceptWritesThePurchaseView(t *testing.T) {
	h, err := New(Deps{AdminToken: "a", JWTSecret: benchSecret, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{1, 42, 1<<53 + 1, math.MaxInt64} {
		w := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(w)
		if err := h.accept(c, id); err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(purchaseView{OrderID: strconv.FormatInt(id, 10), Status: "pending"})
		if w.Code != http.StatusAccepted || w.Body.String() != string(want) || w.Header().Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("order %d: %d %q %q, want 202 %s as JSON", id, w.Code, w.Header().Get("Content-Type"), w.Body, want)
		}
	}
}
