//go:build !race

// The race detector makes sync.Pool drop values at random, so gin's pooled
// contexts are reallocated now and then: allocation counts only hold
// without it.

package handler

import (
	"net/http"
	"testing"
)

// TestSoldOutAnswerDoesNotAllocate guards the sold-out path: it answers the
// crowd after a sale, so every allocation on it is paid at the highest rate
// the service sees.
func TestSoldOutAnswerDoesNotAllocate(t *testing.T) {
	f, reqs := soldOutRequests(t, 4)
	w := &headerWriter{h: http.Header{}}
	i := 0
	got := testing.AllocsPerRun(1000, func() {
		clear(w.h)
		f.engine.ServeHTTP(w, reqs[i%len(reqs)])
		i++
	})
	if w.code != http.StatusConflict {
		t.Fatalf("status: got %d, want 409", w.code)
	}
	if got != 0 {
		t.Errorf("allocations per sold-out answer: got %v, want 0", got)
	}
}
