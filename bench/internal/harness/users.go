package harness

import (
	"errors"
	"fmt"
	"time"

	"seckill/handler"
)

// UserSecret is SECKILL_JWT_SECRET from getenv: the key the API checks user
// tokens with, so a load tool that signs its own users needs the app's.
func UserSecret(getenv func(string) string) ([]byte, error) {
	secret := getenv("SECKILL_JWT_SECRET")
	if len(secret) < 16 {
		return nil, errors.New("SECKILL_JWT_SECRET must be set (at least 16 bytes)")
	}
	return []byte(secret), nil
}

// SignUser makes the HS256 user token the API accepts (sub = decimal user
// id, exp required) with the API's own signer, so the load tools cannot
// drift from what handler checks.
func SignUser(secret []byte, userID int64, now time.Time, ttl time.Duration) (string, error) {
	tok, err := handler.SignUserTokenAt(secret, userID, now, ttl)
	if err != nil {
		return "", fmt.Errorf("sign user %d: %w", userID, err)
	}
	return tok, nil
}
