package authz

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/jwtkeys"
)

// VerifierConfig holds the claim checks.
type VerifierConfig struct {
	Issuers    []string      // accepted iss; empty accepts any
	Audiences  []string      // accepted aud (one match is enough); empty accepts any
	Leeway     time.Duration // clock skew allowed on exp, nbf, iat
	RequireJTI bool          // refuse tokens without jti
	// MaxLifetime refuses tokens whose lifetime, exp - iat, exceeds it (CONTRACT
	// section 3): revocation events are kept that long, so such a token would outlive
	// its own revocation. With it set, a token without iat is refused too. 0 accepts
	// any lifetime.
	MaxLifetime time.Duration
	// CutoffClaims are claims a cutoff may name beyond sub, sid, client_id, which are
	// always read (a list repeating them is fine).
	CutoffClaims []string
}

// Claims are the verified claims a decision needs.
type Claims struct {
	Issuer   string
	Subject  string
	JTI      string
	IssuedAt int64 // 0 when absent
	Expiry   int64
	// ClientID and Azp are the token's client_id and azp claims ("" when absent): a
	// client-scoped cutoff matches when its client_id equals one of them.
	ClientID, Azp string
	// Cutoff holds the values of the claims a cutoff may match, client_id twice
	// (client_id and azp) when they differ.
	Cutoff []blocklist.Claim
}

// tokenClaims is what the verifier decodes from the payload.
type tokenClaims struct {
	jwt.RegisteredClaims
	Sid      string `json:"sid,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	Azp      string `json:"azp,omitempty"`
}

// Verifier checks a token's signature and claims. It is safe for concurrent use.
type Verifier struct {
	keys   *jwtkeys.Keys
	parser *jwt.Parser
	cfg    VerifierConfig
	extra  []string // cutoff claims beyond sub, sid, client_id
}

// NewVerifier returns a Verifier using keys.
func NewVerifier(keys *jwtkeys.Keys, cfg VerifierConfig) *Verifier {
	v := &Verifier{
		keys: keys,
		cfg:  cfg,
		// Claims are checked below against the caller's clock, so that the decision
		// and its reason do not depend on the library's defaults.
		parser: keys.NewParser(jwt.WithoutClaimsValidation()),
	}
	for _, c := range cfg.CutoffClaims {
		// The built-in claims are read from the decoded claims below.
		if !slices.Contains(event.DefaultCutoffClaims, c) && !slices.Contains(v.extra, c) {
			v.extra = append(v.extra, c)
		}
	}
	return v
}

// Verify checks token (already extracted by BearerToken) at now.
func (v *Verifier) Verify(token string, now time.Time) (*Claims, Reason) {
	var tc tokenClaims
	t, err := v.parser.ParseWithClaims(token, &tc, v.keys.Keyfunc)
	if err != nil {
		return nil, v.classify(t, err)
	}
	return v.checkClaims(token, &tc, now)
}

func (v *Verifier) classify(t *jwt.Token, err error) Reason {
	switch {
	case errors.Is(err, jwtkeys.ErrBadAlgorithm):
		return ReasonBadAlgorithm
	case errors.Is(err, jwtkeys.ErrUnknownKey):
		return ReasonUnknownKey
	case errors.Is(err, jwtkeys.ErrCritHeader), errors.Is(err, jwt.ErrTokenMalformed):
		return ReasonMalformed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if t != nil && t.Method != nil && !slices.Contains(v.keys.Methods(), t.Method.Alg()) {
			return ReasonBadAlgorithm
		}
		return ReasonBadSignature
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// An alg the library does not know, such as a made-up name.
		return ReasonBadAlgorithm
	}
	return ReasonMalformed
}

func (v *Verifier) checkClaims(token string, tc *tokenClaims, now time.Time) (*Claims, Reason) {
	if tc.ExpiresAt == nil {
		return nil, ReasonMissingClaim
	}
	if now.After(tc.ExpiresAt.Add(v.cfg.Leeway)) {
		return nil, ReasonExpired
	}
	if v.cfg.MaxLifetime > 0 {
		// Judged by exp - iat, both from the issuer's clock, not exp - now: a 30 h
		// token must not pass once it has 24 h left, by then the stream may have
		// dropped its revocation. Without iat the lifetime cannot be bounded (its jti
		// revocation could age out of the stream while it lives): refused the same way.
		if tc.IssuedAt == nil || tc.ExpiresAt.Sub(tc.IssuedAt.Time) > v.cfg.MaxLifetime {
			return nil, ReasonTooLongLived
		}
	}
	if tc.NotBefore != nil && now.Add(v.cfg.Leeway).Before(tc.NotBefore.Time) {
		return nil, ReasonNotYetValid
	}
	if tc.IssuedAt != nil && now.Add(v.cfg.Leeway).Before(tc.IssuedAt.Time) {
		return nil, ReasonNotYetValid
	}
	if len(v.cfg.Issuers) > 0 && !slices.Contains(v.cfg.Issuers, tc.Issuer) {
		return nil, ReasonWrongIssuer
	}
	if len(v.cfg.Audiences) > 0 && !slices.ContainsFunc(tc.Audience, func(a string) bool { return slices.Contains(v.cfg.Audiences, a) }) {
		return nil, ReasonWrongAudience
	}
	if v.cfg.RequireJTI && tc.ID == "" {
		return nil, ReasonMissingClaim
	}
	c := &Claims{
		Issuer:   tc.Issuer,
		Subject:  tc.Subject,
		JTI:      tc.ID,
		Expiry:   tc.ExpiresAt.Unix(),
		ClientID: tc.ClientID,
		Azp:      tc.Azp,
	}
	if tc.IssuedAt != nil {
		c.IssuedAt = tc.IssuedAt.Unix()
	}
	c.Cutoff = append(c.Cutoff, blocklist.Claim{Name: "sub", Value: tc.Subject}, blocklist.Claim{Name: "sid", Value: tc.Sid}, blocklist.Claim{Name: "client_id", Value: tc.ClientID})
	if tc.Azp != "" && tc.Azp != tc.ClientID {
		c.Cutoff = append(c.Cutoff, blocklist.Claim{Name: "client_id", Value: tc.Azp})
	}
	if len(v.extra) > 0 {
		for name, value := range extraClaims(token, v.extra) {
			c.Cutoff = append(c.Cutoff, blocklist.Claim{Name: name, Value: value})
		}
	}
	return c, ReasonOK
}

// extraClaims reads the values of the named claims from the (verified) payload, as a
// cutoff's value matches them: a string as it is; a number or a boolean by its JSON
// text as the token has it (tenant: 42 matches "42", 4.2e1 does not); null, arrays
// and objects never match. It runs only when the operator allows cutoffs on claims
// beyond sub, sid, client_id.
func extraClaims(token string, names []string) map[string]string {
	_, rest, _ := strings.Cut(token, ".")
	payload, _, _ := strings.Cut(rest, ".")
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return nil
	}
	var all map[string]json.RawMessage
	if json.Unmarshal(raw, &all) != nil {
		return nil
	}
	out := make(map[string]string, len(names))
	for _, n := range names {
		if s := event.ClaimText(all[n]); s != "" {
			out[n] = s
		}
	}
	return out
}
