// Package devissuer is a small token issuer for dev mode, tests and the load tool: it
// makes a signing key, publishes its JWKS and signs tokens. It is not for production.
package devissuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer signs tokens with one key.
type Issuer struct {
	Issuer   string
	Audience string
	KID      string
	method   jwt.SigningMethod
	private  crypto.Signer
}

// New makes an issuer with a fresh key for alg: EdDSA, ES256, ES384, ES512, RS256,
// RS384, RS512, PS256, PS384 or PS512.
func New(alg, issuer, audience string) (*Issuer, error) {
	var key crypto.Signer
	var err error
	switch alg {
	case "EdDSA":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case "ES256":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		key, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("devissuer: unsupported alg %q", alg)
	}
	if err != nil {
		return nil, err
	}
	return &Issuer{Issuer: issuer, Audience: audience, KID: alg + "-" + RandomID()[:8],
		method: jwt.GetSigningMethod(alg), private: key}, nil
}

// PublicKey returns the verification key.
func (i *Issuer) PublicKey() crypto.PublicKey { return i.private.Public() }

// Alg is the signing algorithm.
func (i *Issuer) Alg() string { return i.method.Alg() }

// JWKS returns the issuer's public key as a JWK Set.
func (i *Issuer) JWKS() []byte {
	b, _ := json.Marshal(map[string]any{"keys": []any{i.JWK()}})
	return b
}

// JWK returns the public key as a JWK map.
func (i *Issuer) JWK() map[string]any {
	k := map[string]any{"kid": i.KID, "alg": i.method.Alg(), "use": "sig"}
	enc := base64.RawURLEncoding.EncodeToString
	switch pub := i.private.Public().(type) {
	case ed25519.PublicKey:
		k["kty"], k["crv"], k["x"] = "OKP", "Ed25519", enc(pub)
	case *ecdsa.PublicKey:
		size := (pub.Curve.Params().BitSize + 7) / 8
		k["kty"], k["crv"] = "EC", pub.Curve.Params().Name
		k["x"], k["y"] = enc(pad(pub.X, size)), enc(pad(pub.Y, size))
	case *rsa.PublicKey:
		k["kty"], k["n"], k["e"] = "RSA", enc(pub.N.Bytes()), enc(big.NewInt(int64(pub.E)).Bytes())
	}
	return k
}

func pad(n *big.Int, size int) []byte {
	b := make([]byte, size)
	return n.FillBytes(b)
}

// Sign signs claims as they are, with the issuer's kid in the header (none if KID is empty).
func (i *Issuer) Sign(claims jwt.MapClaims) string {
	t := jwt.NewWithClaims(i.method, claims)
	if i.KID != "" {
		t.Header["kid"] = i.KID
	}
	s, err := t.SignedString(i.private)
	if err != nil {
		panic(err) // only with a broken key, which New never makes
	}
	return s
}

// Token signs a token for sub valid for ttl, with a fresh jti, iat and the issuer's
// iss and aud; extra claims are added or override.
func (i *Issuer) Token(sub string, ttl time.Duration, extra jwt.MapClaims) string {
	now := time.Now()
	c := jwt.MapClaims{
		"iss": i.Issuer, "sub": sub, "jti": RandomID(),
		"iat": now.Unix(), "exp": now.Add(ttl).Unix(),
	}
	if i.Audience != "" {
		c["aud"] = i.Audience
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return i.Sign(c)
}

// RandomID returns 32 random hex digits.
func RandomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
