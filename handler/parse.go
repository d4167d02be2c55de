package handler

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// This file reads what a client writes (ids, JSON, user tokens) exactly as
// the API writes it: one spelling per value, so that no two requests that
// look different mean the same, and none is read as something its sender
// did not write.

// positiveID reads an id as the API writes it: the canonical decimal of a
// positive int64, 1 to 19 digits without sign, blank or leading zero.
// strconv.ParseInt alone also reads "01", "+1" and "0001" as 1, so several
// spellings would name one item, order or user. It does not allocate (the
// purchase path reads one per request).
func positiveID(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 19 || s[0] < '1' || s[0] > '9' {
		return 0, false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	id, err := strconv.ParseInt(s, 10, 64) // fails only past 2^63-1
	return id, err == nil
}

// duplicateName returns the first member name given twice in one object of
// the JSON text data, at any depth, compared as decoded (so "a" and
// "\u0061" are one name). encoding/json keeps the last of duplicates
// silently, which lets one body or token say two things. Text that is not
// valid JSON has no duplicate here as far as it was read: the decoding that
// follows words that error.
func duplicateName(data []byte) (string, bool) {
	type object struct {
		names   map[string]struct{}
		wantKey bool
	}
	var stack []*object // nil entries are arrays
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		var top *object
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if name, ok := tok.(string); ok && top != nil && top.wantKey {
			if _, seen := top.names[name]; seen {
				return name, true
			}
			top.names[name] = struct{}{}
			top.wantKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &object{names: map[string]struct{}{}, wantKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, nil)
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) > 0 {
				top = stack[len(stack)-1]
			} else {
				top = nil
			}
		}
		// A value ended (a scalar or a closed container): in an object
		// the next token is a name.
		if top != nil {
			top.wantKey = true
		}
	}
}

// userClaims are a user token's claims read strictly. golang-jwt decodes
// claims with encoding/json, which matches names in any case ("EXP" fills
// exp), reads a number written as a string into a NumericDate ("exp":"1"),
// and keeps the last of duplicate names; the parser has no option for
// either, so the claims decode themselves: no name twice, the registered
// names (RFC 7519 section 4.1) only as spelt there and with their JSON type,
// and a name that differs from one of them only in case refused as a
// misspelling. Other claims are ignored, as RFC 7519 asks.
type userClaims struct {
	jwt.RegisteredClaims
}

// registeredClaims are the RFC 7519 names and the first byte their JSON
// value may start with: a string, a number, or for aud also an array.
var registeredClaims = map[string]string{
	"iss": `"`, "sub": `"`, "aud": `"[`, "jti": `"`,
	"exp": "-0123456789", "nbf": "-0123456789", "iat": "-0123456789",
}

var (
	errClaimsNotObject = errors.New("claims are not a JSON object")
	errClaimTwice      = errors.New("a claim is given twice")
	errClaimType       = errors.New("a registered claim has the wrong JSON type")
	errClaimCase       = errors.New("a registered claim name is spelt in another case")
)

func (c *userClaims) UnmarshalJSON(b []byte) error {
	if _, dup := duplicateName(b); dup {
		return errClaimTwice
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil || fields == nil {
		return errClaimsNotObject
	}
	for name, v := range fields {
		starts, registered := registeredClaims[name]
		if !registered {
			for r := range registeredClaims {
				if strings.EqualFold(name, r) {
					return errClaimCase
				}
			}
			continue
		}
		if len(v) == 0 || !strings.ContainsRune(starts, rune(v[0])) {
			return errClaimType
		}
	}
	// Every name the struct knows is now exact and typed: the standard
	// decoding reads the values (and refuses what they hold, such as a
	// number in aud's array).
	return json.Unmarshal(b, &c.RegisteredClaims)
}

// errHeaderTwice refuses a token whose header names a parameter twice (the
// parser reads the header into a map, last one wins).
var errHeaderTwice = errors.New("a header parameter is given twice")

// checkHeader is the parser's key function's check of the header as
// written: the parser has already decoded it once, strictly.
func (h *Handler) checkHeader(tok *jwt.Token) error {
	seg, _, _ := strings.Cut(tok.Raw, ".")
	raw, err := h.parser.DecodeSegment(seg)
	if err != nil {
		return err
	}
	if _, dup := duplicateName(raw); dup {
		return errHeaderTwice
	}
	return nil
}
