package ssf

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/revoked-dev/revoked/jwtkeys"
)

// RFC 8935 section 2.3 error codes, the "err" of a 400 answer (and of a poll's setErrs).
const (
	CodeInvalidRequest       = "invalid_request"
	CodeInvalidKey           = "invalid_key"
	CodeInvalidIssuer        = "invalid_issuer"
	CodeInvalidAudience      = "invalid_audience"
	CodeAuthenticationFailed = "authentication_failed"
	CodeAccessDenied         = "access_denied"
)

// SETError is a SET refused: Code is an RFC 8935 error code, Description says why
// (never quoting more than a few bytes of what the transmitter sent).
type SETError struct {
	Code        string
	Description string
}

func (e *SETError) Error() string { return e.Code + ": " + e.Description }

func setErr(code, format string, a ...any) *SETError {
	return &SETError{Code: code, Description: fmt.Sprintf(format, a...)}
}

// MaxSETSize is the largest SET accepted, pushed or polled.
const MaxSETSize = 64 << 10

// clockSkew is how far in the future a SET's iat may be.
const clockSkew = time.Minute

// secEvent is a SET whose signature and claims have been checked.
type secEvent struct {
	iss, jti  string
	iat       int64
	eventType string
	event     map[string]json.RawMessage // the event's members
	subID     json.RawMessage            // the sub_id claim; nil when absent
}

// setClaims are the claims the receiver reads; json.Number keeps large iat exact.
type setClaims struct {
	Iss    *string                    `json:"iss"`
	Aud    json.RawMessage            `json:"aud"`
	Iat    *json.Number               `json:"iat"`
	Jti    *string                    `json:"jti"`
	Exp    json.RawMessage            `json:"exp"`
	Events map[string]json.RawMessage `json:"events"`
	SubID  json.RawMessage            `json:"sub_id"`
}

// unverifiedIssuer reads the iss of a compact JWS without checking it: only to pick the
// transmitter whose keys must then verify it.
func unverifiedIssuer(raw string) (string, error) {
	payload, err := payloadOf(raw)
	if err != nil {
		return "", err
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", setErr(CodeInvalidRequest, "the SET's payload is not a JSON object")
	}
	if c.Iss == "" {
		return "", setErr(CodeInvalidIssuer, "the SET has no iss")
	}
	return c.Iss, nil
}

func payloadOf(raw string) ([]byte, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, setErr(CodeInvalidRequest, "the SET is not a compact JWS (three dot-separated parts); encrypted SETs are not accepted")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, setErr(CodeInvalidRequest, "the SET's payload is not base64url")
	}
	return payload, nil
}

// verifySET checks raw as RFC 8417 and SSF 1.0 ask: the signature against the
// transmitter's keys (the fixed algorithm list: never none), typ secevent+jwt (or a
// legacy typ the transmitter allows), then the claims (checkClaims).
func verifySET(raw string, keys *jwtkeys.Keys, t *Transmitter, maxAge time.Duration, now time.Time) (*secEvent, error) {
	p := keys.NewParser(jwt.WithoutClaimsValidation(), jwt.WithJSONNumber())
	tok, err := p.Parse(raw, keys.Keyfunc)
	if err != nil {
		switch {
		case errors.Is(err, jwt.ErrTokenMalformed):
			return nil, setErr(CodeInvalidRequest, "the SET is not a well-formed JWT")
		case errors.Is(err, jwtkeys.ErrBadAlgorithm), errors.Is(err, jwt.ErrTokenSignatureInvalid) && tok != nil && tok.Method != nil && !slices.Contains(keys.Methods(), tok.Method.Alg()):
			return nil, setErr(CodeInvalidKey, "the SET's algorithm is not accepted")
		case errors.Is(err, jwtkeys.ErrUnknownKey):
			return nil, setErr(CodeInvalidKey, "no key of the transmitter's JWKS matches the SET's kid")
		case errors.Is(err, jwtkeys.ErrCritHeader):
			return nil, setErr(CodeInvalidRequest, "the SET has a crit header the receiver does not understand")
		}
		return nil, setErr(CodeInvalidKey, "the SET's signature does not verify with the transmitter's keys")
	}
	if err := checkTyp(tok.Header["typ"], t.LegacyTyp); err != nil {
		return nil, err
	}
	payload, err := payloadOf(raw)
	if err != nil {
		return nil, err
	}
	ev, err := parseClaims(payload)
	if err != nil {
		return nil, err
	}
	if err := checkClaims(ev, payload, t, maxAge, now); err != nil {
		return nil, err
	}
	return ev, nil
}

// checkTyp accepts secevent+jwt (with or without the application/ prefix, any case),
// or one of legacy ("" stands for no typ).
func checkTyp(v any, legacy []string) error {
	typ, isString := v.(string)
	if v != nil && !isString {
		return setErr(CodeInvalidRequest, "the SET's typ is not a string")
	}
	norm := strings.TrimPrefix(strings.ToLower(typ), "application/")
	if norm == "secevent+jwt" {
		return nil
	}
	for _, l := range legacy {
		if strings.EqualFold(strings.TrimPrefix(strings.ToLower(l), "application/"), norm) && (l == "") == (typ == "") {
			return nil
		}
	}
	if typ == "" {
		return setErr(CodeInvalidRequest, "the SET has no typ; want secevent+jwt")
	}
	return setErr(CodeInvalidRequest, "the SET's typ %.40q is not secevent+jwt", typ)
}

// parseClaims reads a SET's payload and checks its shape: iss, iat and jti present, no
// exp, exactly one event whose value is a JSON object. It is the fuzzed parser.
func parseClaims(payload []byte) (*secEvent, error) {
	c, err := decodeClaims(payload)
	if err != nil {
		return nil, err
	}
	if c.Iss == nil || *c.Iss == "" {
		return nil, setErr(CodeInvalidIssuer, "the SET has no iss")
	}
	if c.Jti == nil || *c.Jti == "" {
		return nil, setErr(CodeInvalidRequest, "the SET has no jti")
	}
	if len(*c.Jti) > 256 {
		return nil, setErr(CodeInvalidRequest, "the SET's jti is longer than 256 bytes")
	}
	if c.Iat == nil {
		return nil, setErr(CodeInvalidRequest, "the SET has no iat")
	}
	iat, err := c.Iat.Int64()
	if err != nil || iat <= 0 {
		return nil, setErr(CodeInvalidRequest, "the SET's iat is not a positive integer")
	}
	if c.Exp != nil {
		return nil, setErr(CodeInvalidRequest, "the SET has an exp claim, which SSF forbids (a SET is not an access token)")
	}
	if len(c.Events) != 1 {
		return nil, setErr(CodeInvalidRequest, "the SET carries %d events; exactly one is required", len(c.Events))
	}
	ev := &secEvent{iss: *c.Iss, jti: *c.Jti, iat: iat, subID: c.SubID}
	for typ, raw := range c.Events {
		if typ == "" {
			return nil, setErr(CodeInvalidRequest, "the SET's event type is empty")
		}
		ev.eventType = typ
		if err := json.Unmarshal(raw, &ev.event); err != nil || ev.event == nil {
			return nil, setErr(CodeInvalidRequest, "the SET's event is not a JSON object")
		}
	}
	if len(c.SubID) > 0 && string(c.SubID) == "null" {
		ev.subID = nil
	}
	return ev, nil
}

// decodeClaims reads the claims by their exact names: encoding/json would also take
// "EXP" or "Iss" for exp and iss, and a SET must not slip an exp past the check that way.
func decodeClaims(payload []byte) (*setClaims, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(payload, &m); err != nil || m == nil {
		return nil, setErr(CodeInvalidRequest, "the SET's claims are not a JSON object")
	}
	c := &setClaims{Aud: m["aud"], Exp: m["exp"], SubID: m["sub_id"]}
	for name, dst := range map[string]any{"iss": &c.Iss, "iat": &c.Iat, "jti": &c.Jti, "events": &c.Events} {
		raw, ok := m[name]
		if !ok {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(dst); err != nil {
			return nil, setErr(CodeInvalidRequest, "the SET's %s claim has the wrong type", name)
		}
	}
	return c, nil
}

// checkClaims checks what depends on the transmitter and the clock: iss, aud, iat.
func checkClaims(ev *secEvent, payload []byte, t *Transmitter, maxAge time.Duration, now time.Time) error {
	if ev.iss != t.Issuer {
		return setErr(CodeInvalidIssuer, "the SET's iss is not the transmitter's issuer")
	}
	c, err := decodeClaims(payload)
	if err != nil {
		return err
	}
	var auds []string
	var one string
	switch {
	case json.Unmarshal(c.Aud, &one) == nil:
		auds = []string{one}
	case json.Unmarshal(c.Aud, &auds) == nil:
	default:
		return setErr(CodeInvalidAudience, "the SET has no aud")
	}
	if !slices.Contains(auds, t.Audience) {
		return setErr(CodeInvalidAudience, "the SET's aud does not name this receiver")
	}
	iat := time.Unix(ev.iat, 0)
	if iat.After(now.Add(clockSkew)) {
		return setErr(CodeInvalidRequest, "the SET's iat is %s in the future", iat.Sub(now).Round(time.Second))
	}
	if age := now.Sub(iat); age > maxAge {
		return setErr(CodeInvalidRequest, "the SET was issued %s ago, more than the %s accepted", age.Round(time.Second), maxAge)
	}
	return nil
}
