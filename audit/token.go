package audit

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/revoked-dev/revoked/event"
)

// Token errors.
var (
	// ErrNotJWT is returned for input that is not a signed JWT in compact form.
	ErrNotJWT = errors.New("audit: not a signed JWT (header.payload.signature)")
	// ErrEncrypted is returned for a JWE: its claims cannot be read without the key.
	ErrEncrypted = errors.New("audit: an encrypted token (JWE, five parts): its claims cannot be read")
	// ErrClaims is returned for claims a sidecar could not read either (sub a number,
	// exp a string): the sidecar refuses such a token as malformed.
	ErrClaims = errors.New("audit: claims a sidecar refuses as malformed")
)

// Token is what an audit reads from a JWT without verifying it: the claims the
// sidecar's decision keys on, and every header field and claim for display. It never
// holds the signature or the token itself.
type Token struct {
	Header map[string]json.RawMessage // alg, kid, typ…
	Claims map[string]json.RawMessage // the whole payload

	Iss, Sub, JTI, Sid string
	ClientID, Azp      string
	Iat, Exp           int64 // unix seconds; 0 when absent
}

// decisionClaims are read as the sidecar reads them (authz/verify.go tokenClaims), with
// the same library types, so that a claim the sidecar could not decode fails here too.
type decisionClaims struct {
	jwt.RegisteredClaims
	Sid      string `json:"sid,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	Azp      string `json:"azp,omitempty"`
}

// ParseToken reads a compact JWS (optionally after "Bearer ") without verifying it.
func ParseToken(raw string) (*Token, error) {
	raw = strings.TrimSpace(raw)
	if len(raw) > 7 && strings.EqualFold(raw[:7], "bearer ") {
		raw = strings.TrimSpace(raw[7:])
	}
	parts := strings.Split(raw, ".")
	switch {
	case len(parts) == 5:
		return nil, ErrEncrypted
	case len(parts) != 3 || parts[0] == "" || parts[1] == "":
		return nil, ErrNotJWT
	}
	t := &Token{}
	var err error
	if t.Header, err = decodeObject(parts[0]); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrNotJWT, err)
	}
	if t.Claims, err = decodeObject(parts[1]); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrNotJWT, err)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var dc decisionClaims
	if err := json.Unmarshal(payload, &dc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrClaims, err)
	}
	t.Iss, t.Sub, t.JTI = dc.Issuer, dc.Subject, dc.ID
	t.Sid, t.ClientID, t.Azp = dc.Sid, dc.ClientID, dc.Azp
	if dc.IssuedAt != nil {
		t.Iat = dc.IssuedAt.Unix()
	}
	if dc.ExpiresAt != nil {
		t.Exp = dc.ExpiresAt.Unix()
	}
	return t, nil
}

// decodeObject decodes one base64url segment holding a JSON object. Padding is
// refused, as the sidecar's JWT parser refuses it.
func decodeObject(seg string) (map[string]json.RawMessage, error) {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, errors.New("not unpadded base64url")
	}
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, errors.New("not a JSON object")
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	return m, nil
}

// Values returns the values a cutoff on claim is compared with, as the sidecar reads
// them: client_id also matches azp; an operator's claim is read by event.ClaimText.
func (t *Token) Values(claim string) []string {
	var vs []string
	add := func(v string) {
		if v != "" && (len(vs) == 0 || vs[0] != v) {
			vs = append(vs, v)
		}
	}
	switch claim {
	case "sub":
		add(t.Sub)
	case "sid":
		add(t.Sid)
	case "client_id":
		add(t.ClientID)
		add(t.Azp)
	default:
		add(event.ClaimText(t.Claims[claim]))
	}
	return vs
}

// Clients returns the token's client_id and azp (each once, empty ones left out): a
// client-scoped cutoff applies when its client_id is one of them.
func (t *Token) Clients() []string { return t.Values("client_id") }

// ClaimNames returns the names of the token's claims, sorted.
func (t *Token) ClaimNames() []string {
	names := make([]string, 0, len(t.Claims))
	for n := range t.Claims {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Needles are the strings an event that names the token carries (see
// ScanOptions.Needles): its jti and the text of its claims, since a cutoff may name any
// claim (one the sidecars were not told to allow is reported as not enforced). iss is
// left out unless extraClaims allow cutoffs on it: every event of the issuer holds it,
// and an event's own iss only narrows it.
func (t *Token) Needles(extraClaims []string) []string {
	seen := map[string]bool{"": true}
	var n []string
	add := func(v string) {
		if !seen[v] {
			seen[v] = true
			n = append(n, v)
		}
	}
	add(t.JTI)
	for _, name := range t.ClaimNames() {
		if name == "iss" && !slices.Contains(extraClaims, "iss") {
			continue
		}
		for _, v := range t.Values(name) {
			add(v)
		}
	}
	return n
}
