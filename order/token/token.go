// Package token makes and checks purchase tokens: self-contained, signed,
// verified in process. Issuing one writes nothing anywhere; Redis learns of
// a token only when it is first used (the purchase script stores its answer
// under the token's ID).
//
// A token is 74 bytes, base64url without padding (99 characters):
//
//	0       version (1)
//	1       key id: which signing key made the MAC (rotation)
//	2..10   item id, big-endian
//	10..18  user id, big-endian
//	18..26  expiry, Unix milliseconds, big-endian
//	26..42  nonce: 16 random bytes, the token's ID
//	42..74  HMAC-SHA256 of bytes 0..42 under the key named by byte 1
//
// Everything but the MAC is readable by its holder; nothing in it is
// secret. The MAC binds the item, the user and the expiry to the nonce, so
// a token altered in any byte, or made without a key, is refused, and a
// token of another user or item is refused by comparing its claims.
package token

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync"
	"time"
)

// Layout of a token's bytes.
const (
	version    = 1
	offKey     = 1
	offItem    = 2
	offUser    = 10
	offExpires = 18
	offNonce   = 26
	offMAC     = 42
	size       = offMAC + sha256.Size

	// Len is the length of every token, in characters.
	Len = (size*8 + 5) / 6
	// MinSecret is the shortest signing key accepted: a shorter HMAC key
	// could be brute-forced offline from one token.
	MinSecret = 16
)

var enc = base64.RawURLEncoding.Strict()

// Errors of Verify. All mean the same to a buyer (the token is not one of
// ours); they differ for logs and tests.
var (
	ErrMalformed  = errors.New("purchase token malformed")
	ErrUnknownKey = errors.New("purchase token signed with a key not configured")
	ErrSignature  = errors.New("purchase token signature invalid")
)

// ID is a token's nonce: 16 bytes that stand for the token wherever it is
// stored (Redis keys, the in-process answer memory, the journal).
type ID [16]byte

// Claims is what a verified token says.
type Claims struct {
	ItemID, UserID int64
	// Expires is when the token stops being usable for a first purchase
	// (Unix ms). A used token's answer outlives it (see sale).
	Expires int64
	ID      ID
	// KeyID names the key that signed it.
	KeyID uint8
}

// ExpiresAt is Expires as a time.
func (c Claims) ExpiresAt() time.Time { return time.UnixMilli(c.Expires) }

// Key is one signing key: its id, carried by every token it signs, and its
// secret.
type Key struct {
	ID     uint8
	Secret []byte
}

// Keys signs tokens with the current key and verifies tokens of the
// current key and of the previous ones (a rotation: a key that stopped
// signing is still accepted until the tokens it signed, and the answers of
// those used, have run out). Safe for concurrent use.
type Keys struct {
	current *macPool
	byID    [256]*macPool
}

// macPool hands out HMAC states of one key: making one costs two SHA-256
// blocks and an allocation, so they are reused.
type macPool struct {
	id   uint8
	pool sync.Pool
}

// mac is one HMAC state with buffers of its own: what goes through the
// hash.Hash interface escapes, and a token's bytes are on the stack.
type mac struct {
	h   hash.Hash
	msg [offMAC]byte
	sum [sha256.Size]byte
}

// of computes the MAC of b[:offMAC] into m.sum.
func (m *mac) of(b *[size]byte) []byte {
	copy(m.msg[:], b[:offMAC])
	m.h.Reset()
	m.h.Write(m.msg[:])
	return m.h.Sum(m.sum[:0])
}

// NewKeys accepts tokens of current and previous, and signs with current.
// Key ids must differ and secrets be at least MinSecret bytes.
func NewKeys(current Key, previous ...Key) (*Keys, error) {
	k := &Keys{}
	for i, key := range append([]Key{current}, previous...) {
		if len(key.Secret) < MinSecret {
			return nil, fmt.Errorf("purchase token key %d: secret is %d bytes, want at least %d", key.ID, len(key.Secret), MinSecret)
		}
		if k.byID[key.ID] != nil {
			return nil, fmt.Errorf("purchase token key id %d given twice", key.ID)
		}
		secret := append([]byte(nil), key.Secret...)
		p := &macPool{id: key.ID}
		p.pool.New = func() any { return &mac{h: hmac.New(sha256.New, secret)} }
		k.byID[key.ID] = p
		if i == 0 {
			k.current = p
		}
	}
	return k, nil
}

// sign writes the MAC of b[:offMAC] into b[offMAC:] with p's key.
func (p *macPool) sign(b *[size]byte) {
	m := p.pool.Get().(*mac)
	copy(b[offMAC:], m.of(b))
	p.pool.Put(m)
}

// valid reports whether b's MAC is p's key's, in constant time.
func (p *macPool) valid(b *[size]byte) bool {
	m := p.pool.Get().(*mac)
	ok := hmac.Equal(m.of(b), b[offMAC:])
	p.pool.Put(m)
	return ok
}

// Issue makes a token of user for item, usable until expires.
func (k *Keys) Issue(itemID, userID int64, expires time.Time) (string, Claims, error) {
	c := Claims{ItemID: itemID, UserID: userID, Expires: expires.UnixMilli(), KeyID: k.current.id}
	if _, err := rand.Read(c.ID[:]); err != nil {
		return "", Claims{}, err
	}
	var b [size]byte
	b[0], b[offKey] = version, c.KeyID
	binary.BigEndian.PutUint64(b[offItem:], uint64(itemID))
	binary.BigEndian.PutUint64(b[offUser:], uint64(userID))
	binary.BigEndian.PutUint64(b[offExpires:], uint64(c.Expires))
	copy(b[offNonce:], c.ID[:])
	k.current.sign(&b)
	var text [Len]byte // on the stack: EncodeToString would allocate twice
	enc.Encode(text[:], b[:])
	return string(text[:]), c, nil
}

// Verify checks tok's form and MAC and returns its claims. It does not look
// at the expiry, the item or the user: the caller compares those. It
// allocates nothing (the purchase path calls it on every request).
func (k *Keys) Verify(tok string) (Claims, error) {
	if len(tok) != Len {
		return Claims{}, ErrMalformed
	}
	var src [Len]byte
	copy(src[:], tok)
	var b [size]byte
	if n, err := enc.Decode(b[:], src[:]); err != nil || n != size || b[0] != version {
		return Claims{}, ErrMalformed
	}
	p := k.byID[b[offKey]]
	if p == nil {
		return Claims{}, ErrUnknownKey
	}
	if !p.valid(&b) {
		return Claims{}, ErrSignature
	}
	c := Claims{
		ItemID:  int64(binary.BigEndian.Uint64(b[offItem:])),
		UserID:  int64(binary.BigEndian.Uint64(b[offUser:])),
		Expires: int64(binary.BigEndian.Uint64(b[offExpires:])),
		KeyID:   b[offKey],
	}
	copy(c.ID[:], b[offNonce:offMAC])
	return c, nil
}
