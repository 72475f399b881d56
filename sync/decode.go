package sync

import (
	"bytes"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/revoked-dev/revoked/event"
)

// decodeEvent is event.Decode with a fast path for the payloads publishers send: one
// flat JSON object whose keys are the event's own field names (or other names, with
// scalar values), strings without escapes, integers in plain digits. A cold start
// replays every event of the stream, and encoding/json spent about 2 µs of the 2.6 µs
// an event cost. Anything outside that shape (escapes, nesting, nulls, floats, keys
// that differ only in case from a field name, which encoding/json would match) goes to
// event.Decode, so the result, error included, is always the one event.Decode gives.
func decodeEvent(payload []byte, allowedClaims []string) (event.Event, error) {
	return decode(payload, allowedClaims, false)
}

// decodeEventView is decodeEvent without a copy: on the fast path the event's strings
// share payload's memory, so they are valid only while payload is, and unchanged. A
// replay decodes a million events only to hash their strings into keys: copying them
// was a fifth of the replica's CPU and most of its garbage. The caller keeps none.
func decodeEventView(payload []byte, allowedClaims []string) (event.Event, error) {
	return decode(payload, allowedClaims, true)
}

func decode(payload []byte, allowedClaims []string, view bool) (event.Event, error) {
	if len(payload) <= event.MaxPayload && utf8.Valid(payload) {
		if ev, ok := fastDecode(payload, view); ok {
			return ev, ev.Validate(allowedClaims)
		}
	}
	return event.Decode(payload, allowedClaims)
}

type scanner struct {
	b    []byte
	i    int
	view bool // strings share b's memory (decodeEventView)
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// str reads a string without escapes or control characters.
func (s *scanner) str() (string, bool) {
	if s.peek() != '"' {
		return "", false
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			if s.view && j > start {
				return unsafe.String(&s.b[start], j-start), true
			}
			return string(s.b[start:j]), true
		case c == '\\' || c < 0x20:
			return "", false
		}
	}
	return "", false
}

// integer reads -?(0|[1-9][0-9]*) that fits an int64.
func (s *scanner) integer() (int64, bool) {
	neg := false
	if s.peek() == '-' {
		neg = true
		s.i++
	}
	start := s.i
	var v uint64
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		if v > (1<<63)/10 {
			return 0, false
		}
		v = v*10 + uint64(s.b[s.i]-'0')
		s.i++
	}
	n := s.i - start
	switch {
	case n == 0, n > 1 && s.b[start] == '0', v > 1<<63, !neg && v == 1<<63:
		return 0, false
	}
	switch s.peek() {
	case '.', 'e', 'E':
		return 0, false
	}
	if neg {
		return -int64(v), true
	}
	return int64(v), true
}

// skipScalar skips a string, number, true, false or null (nothing nested).
func (s *scanner) skipScalar() bool {
	switch c := s.peek(); {
	case c == '"':
		_, ok := s.str()
		return ok
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
				s.i += len(lit)
				return true
			}
		}
	}
	return false
}

// number skips a JSON number: -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?
func (s *scanner) number() bool {
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.peek() == '-' {
		s.i++
	}
	if s.peek() == '0' {
		s.i++
	} else if digits() == 0 {
		return false
	}
	if s.peek() == '.' {
		s.i++
		if digits() == 0 {
			return false
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}

// eventFields are event.Event's JSON names: a key that matches one only when case is
// folded goes to encoding/json, which would fill that field. A field added to
// event.Event must be added here and to fastDecode's switch (FuzzDecodeEvent finds
// the omission).
var eventFields = []string{"type", "jti", "exp", "claim", "value", "not_before", "iss", "sub", "reason", "revoked_at", "revoked_by", "event_id", "client_id", "source"}

func fastDecode(b []byte, view bool) (ev event.Event, ok bool) {
	s := scanner{b: b, view: view}
	s.ws()
	if s.peek() != '{' {
		return ev, false
	}
	s.i++
	s.ws()
	if s.peek() == '}' {
		s.i++
	} else {
		for {
			s.ws()
			key, ok := s.str()
			if !ok {
				return ev, false
			}
			s.ws()
			if s.peek() != ':' {
				return ev, false
			}
			s.i++
			s.ws()
			var sp *string
			var ip *int64
			switch key {
			case "type":
				sp = &ev.Type
			case "jti":
				sp = &ev.JTI
			case "claim":
				sp = &ev.Claim
			case "value":
				sp = &ev.Value
			case "iss":
				sp = &ev.Iss
			case "sub":
				sp = &ev.Sub
			case "reason":
				sp = &ev.Reason
			case "revoked_by":
				sp = &ev.RevokedBy
			case "event_id":
				sp = &ev.EventID
			case "client_id":
				sp = &ev.ClientID
			case "source":
				sp = &ev.Source
			case "exp":
				ip = &ev.Exp
			case "not_before":
				ip = &ev.NotBefore
			case "revoked_at":
				ip = &ev.RevokedAt
			default:
				for i := 0; i < len(key); i++ {
					if key[i] >= utf8.RuneSelf {
						return ev, false // encoding/json folds some non-ASCII runes
					}
				}
				for _, f := range eventFields {
					if strings.EqualFold(key, f) {
						return ev, false
					}
				}
				if !s.skipScalar() {
					return ev, false
				}
			}
			switch {
			case sp != nil:
				if *sp, ok = s.str(); !ok {
					return ev, false
				}
			case ip != nil:
				if *ip, ok = s.integer(); !ok {
					return ev, false
				}
			}
			s.ws()
			switch s.peek() {
			case ',':
				s.i++
				continue
			case '}':
				s.i++
			default:
				return ev, false
			}
			break
		}
	}
	s.ws()
	return ev, s.i == len(s.b)
}
