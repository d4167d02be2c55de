//go:build !race

// The race detector makes sync.Pool drop values at random, so the pooled
// HMAC states are made again now and then: allocation counts only hold
// without it.

package token

import (
	"testing"
	"time"
)

// TestVerifyAllocs: the purchase path verifies on every request.
func TestVerifyAllocs(t *testing.T) {
	k := mustKeys(t, keyA)
	tok, _, _ := k.Issue(1, 2, time.Now().Add(time.Minute))
	k.Verify(tok)
	if n := testing.AllocsPerRun(100, func() { k.Verify(tok) }); n != 0 {
		t.Fatalf("Verify allocates %v times, want 0", n)
	}
}
