package token

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var (
	keyA = Key{ID: 1, Secret: []byte("secret-a-0123456789")}
	keyB = Key{ID: 2, Secret: []byte("secret-b-0123456789")}
)

func mustKeys(t testing.TB, cur Key, prev ...Key) *Keys {
	t.Helper()
	k, err := NewKeys(cur, prev...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestRoundTrip: a token says what it was issued for, is URL-safe and of
// the documented length, and two tokens never share an ID.
func TestRoundTrip(t *testing.T) {
	k := mustKeys(t, keyA)
	exp := time.UnixMilli(1_900_000_000_123)
	tok, c, err := k.Issue(42, 1<<40, exp)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != Len || strings.ContainsAny(tok, "+/=") {
		t.Fatalf("token %q: len %d, want %d URL-safe characters", tok, len(tok), Len)
	}
	got, err := k.Verify(tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got != c || got.ItemID != 42 || got.UserID != 1<<40 || !got.ExpiresAt().Equal(exp) || got.KeyID != 1 {
		t.Fatalf("Verify = %+v, want %+v", got, c)
	}
	tok2, c2, _ := k.Issue(42, 1<<40, exp)
	if tok2 == tok || c2.ID == c.ID {
		t.Fatalf("two issues gave the same token or ID: %q", tok)
	}
}

// TestAltered: changing any character of a token, its length, or signing
// with a key not configured is refused.
func TestAltered(t *testing.T) {
	k := mustKeys(t, keyA)
	tok, _, _ := k.Issue(7, 9, time.Now().Add(time.Minute))
	for i := range tok {
		b := []byte(tok)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		if _, err := k.Verify(string(b)); err == nil {
			t.Errorf("token altered at %d verified", i)
		}
	}
	for _, bad := range []string{"", tok[:Len-1], tok + "A", strings.Repeat("A", Len), "0f1e2d3c4b5a69788796a5b4c3d2e1f0"} {
		if _, err := k.Verify(bad); err == nil {
			t.Errorf("Verify(%q) passed", bad)
		}
	}
	other := mustKeys(t, Key{ID: 1, Secret: []byte("another-secret-0123")})
	forged, _, _ := other.Issue(7, 9, time.Now().Add(time.Minute))
	if _, err := k.Verify(forged); !errors.Is(err, ErrSignature) {
		t.Errorf("token of another secret: %v, want ErrSignature", err)
	}
	unknown, _, _ := mustKeys(t, Key{ID: 9, Secret: keyA.Secret}).Issue(7, 9, time.Now().Add(time.Minute))
	if _, err := k.Verify(unknown); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("token of key id 9: %v, want ErrUnknownKey", err)
	}
}

// TestRotation: during a rotation both keys verify and the new one signs;
// once the old key is dropped its tokens are refused.
func TestRotation(t *testing.T) {
	before := mustKeys(t, keyA)
	during := mustKeys(t, keyB, keyA)
	after := mustKeys(t, keyB)
	old, _, _ := before.Issue(1, 2, time.Now().Add(time.Minute))
	fresh, c, _ := during.Issue(1, 2, time.Now().Add(time.Minute))
	if c.KeyID != keyB.ID {
		t.Fatalf("new token signed by key %d, want %d", c.KeyID, keyB.ID)
	}
	for _, tc := range []struct {
		keys *Keys
		tok  string
		ok   bool
	}{{during, old, true}, {during, fresh, true}, {after, fresh, true}, {after, old, false}, {before, fresh, false}} {
		if _, err := tc.keys.Verify(tc.tok); (err == nil) != tc.ok {
			t.Errorf("Verify: %v, want ok=%v", err, tc.ok)
		}
	}
}

func TestNewKeysRefuses(t *testing.T) {
	if _, err := NewKeys(Key{ID: 1, Secret: []byte("short")}); err == nil {
		t.Error("short secret accepted")
	}
	if _, err := NewKeys(keyA, Key{ID: 1, Secret: keyB.Secret}); err == nil {
		t.Error("duplicate key id accepted")
	}
}

func BenchmarkIssue(b *testing.B) {
	k := mustKeys(b, keyA)
	exp := time.Now().Add(time.Minute)
	for b.Loop() {
		k.Issue(1, 2, exp)
	}
}

func BenchmarkVerify(b *testing.B) {
	k := mustKeys(b, keyA)
	tok, _, _ := k.Issue(1, 2, time.Now().Add(time.Minute))
	for b.Loop() {
		k.Verify(tok)
	}
}
