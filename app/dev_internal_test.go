package app

import "testing"

// TestDevBase: the printed URL reaches the listen address; a listener on
// every interface is reached through loopback and says so.
func TestDevBase(t *testing.T) {
	for _, tc := range []struct{ addr, base, note string }{
		{"127.0.0.1:8080", "http://127.0.0.1:8080", ""},
		{"192.0.2.7:9000", "http://192.0.2.7:9000", ""},
		{"[::1]:8080", "http://[::1]:8080", ""},
		{"[::]:8080", "http://127.0.0.1:8080", " (listening on all interfaces, [::]:8080)"},
		{"0.0.0.0:8080", "http://127.0.0.1:8080", " (listening on all interfaces, 0.0.0.0:8080)"},
	} {
		if base, note := devBase(tc.addr); base != tc.base || note != tc.note {
			t.Errorf("devBase(%q): got %q %q, want %q %q", tc.addr, base, note, tc.base, tc.note)
		}
	}
}
