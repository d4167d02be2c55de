package handler

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

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
// silently, which lets one body or token say two things. data must be
// valid JSON (the callers have it decoded once already); on other text the
// answer means nothing, but the scan never fails.
func duplicateName(data []byte) (string, bool) {
	s := nameScan{b: data}
	s.value()
	return s.dup, s.found
}

// nameScan walks valid JSON once, without decoding values: a check run on
// every user token the memory has not seen, so it must cost little next to
// the decoding itself (encoding/json's Decoder.Token boxes every token).
type nameScan struct {
	b     []byte
	i     int
	dup   string
	found bool
	// member, if set, sees each member of the outermost object: its name
	// (decoded) and the first byte of its value; false stops the scan.
	member  func(name string, first byte) bool
	stopped bool
	depth   int
}

func (s *nameScan) peek() byte {
	for s.i < len(s.b) {
		switch c := s.b[s.i]; c {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return c
		}
	}
	return 0
}

func (s *nameScan) done() bool { return s.found || s.stopped || s.i >= len(s.b) }

// value skips one value, scanning the objects in it.
func (s *nameScan) value() {
	switch s.peek() {
	case '{':
		s.object()
	case '[':
		s.i++
		s.depth++
		for !s.done() && s.peek() != ']' {
			s.value()
			if s.peek() == ',' {
				s.i++
			}
		}
		s.i++
		s.depth--
	case '"':
		s.str()
	default: // a number, true, false or null
		start := s.i
		for s.i < len(s.b) && !strings.ContainsRune(",]} \t\r\n", rune(s.b[s.i])) {
			s.i++
		}
		if s.i == start { // not JSON: stop rather than loop
			s.i = len(s.b)
		}
	}
}

func (s *nameScan) object() {
	s.i++
	s.depth++
	var names []string
	for !s.done() && s.peek() != '}' {
		if s.peek() != '"' {
			s.i = len(s.b) // not JSON: stop
			return
		}
		name := s.str()
		if slices.Contains(names, name) {
			s.dup, s.found = name, true
			return
		}
		names = append(names, name)
		if s.peek() == ':' {
			s.i++
		}
		if s.depth == 1 && s.member != nil && !s.member(name, s.peek()) {
			s.stopped = true
			return
		}
		s.value()
		if s.peek() == ',' {
			s.i++
		}
	}
	s.i++
	s.depth--
}

// str reads a string at s.i and returns it decoded.
func (s *nameScan) str() string {
	start := s.i
	escaped := false
	for s.i++; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case '\\':
			escaped = true
			s.i++
			continue
		case '"':
		default:
			continue
		}
		break
	}
	s.i++
	if s.i > len(s.b) {
		return ""
	}
	raw := s.b[start:s.i]
	if !escaped && utf8.Valid(raw) {
		return string(raw[1 : len(raw)-1])
	}
	// As encoding/json decodes it (escapes resolved, invalid UTF-8 made
	// U+FFFD), so that two names it reads as one are one here. A string
	// of valid JSON always decodes.
	var v string
	_ = json.Unmarshal(raw, &v)
	return v
}

// userClaims are a user token's claims read strictly. golang-jwt decodes
// claims with encoding/json, which matches names in any case ("EXP" fills
// exp), reads a number written as a string into a NumericDate ("exp":"1"),
// and keeps the last of duplicate names; the parser has no option for any
// of these, so the claims decode themselves: no name twice, the registered
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
	if s := bytes.TrimLeft(b, " \t\r\n"); len(s) == 0 || s[0] != '{' {
		return errClaimsNotObject
	}
	var bad error
	scan := nameScan{b: b, member: func(name string, first byte) bool {
		starts, registered := registeredClaims[name]
		switch {
		case registered && !strings.ContainsRune(starts, rune(first)):
			bad = errClaimType
		case !registered && isRegisteredFold(name):
			bad = errClaimCase
		}
		return bad == nil
	}}
	scan.value()
	switch {
	case scan.found:
		return errClaimTwice
	case bad != nil:
		return bad
	}
	// Every name the struct knows is now exact and typed: the standard
	// decoding reads the values (and refuses what they hold, such as a
	// number in aud's array).
	return json.Unmarshal(b, &c.RegisteredClaims)
}

// isRegisteredFold reports whether name is a registered claim name in
// another case, folded as encoding/json matches names (bytes.EqualFold:
// "ſub" with a long s is "sub" to it).
func isRegisteredFold(name string) bool {
	for r := range registeredClaims {
		if strings.EqualFold(name, r) {
			return true
		}
	}
	return false
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
