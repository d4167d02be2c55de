package stock

import (
	"seckill/app/testenv"
	"strings"
	"testing"
)

// TestTokenBytes: token IDs in TokenString's form, and only they, have
// bytes; two different strings never share them (upper-case hex is another
// key to Redis, so it must be another key in memory too).
func TestTokenBytes(t *testing.T) {
	tok := testenv.TokenID()
	b, ok := TokenBytes(tok)
	if !ok || TokenString(b) != tok {
		t.Fatalf("TokenBytes(%q) = %x, %v; want its bytes", tok, b, ok)
	}
	for _, bad := range []string{"", tok[:31], tok + "0", strings.ToUpper(tok), "g" + tok[1:], " " + tok[1:], strings.Repeat("z", 32)} {
		if b, ok := TokenBytes(bad); ok {
			t.Errorf("TokenBytes(%q) = %x, true; want false", bad, b)
		}
	}
}
