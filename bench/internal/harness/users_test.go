package harness

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"seckill/app/apptest"
)

func TestSignUser(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name    string
		secret  string
		ttl     time.Duration
		wantErr bool
	}{
		{"valid", apptest.JWTSecret, time.Hour, false},
		{"other secret", "another-secret-0123456789", time.Hour, true},
		{"expired", apptest.JWTSecret, -time.Minute, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := SignUser([]byte(apptest.JWTSecret), 42, now, tt.ttl)
			if err != nil {
				t.Fatalf("SignUser: %v", err)
			}
			// The options the API's parser uses (handler.New).
			p := jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
			var claims jwt.RegisteredClaims
			_, err = p.ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return []byte(tt.secret), nil })
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("parse error: got %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && claims.Subject != "42" {
				t.Errorf("sub: got %q, want %q", claims.Subject, "42")
			}
		})
	}
}
