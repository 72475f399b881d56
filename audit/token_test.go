package audit

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// sign returns an HS256 token with claims.
func sign(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsigned builds a token from raw header and payload JSON.
func unsigned(header, payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + ".c2ln"
}

func TestParseToken(t *testing.T) {
	raw := sign(t, jwt.MapClaims{
		"iss": "https://idp", "sub": "user-42", "jti": "j1", "sid": "s1",
		"client_id": "web", "azp": "spa", "iat": 1767222000, "exp": 1767225600.9, "tenant": 42,
	})
	tok, err := ParseToken("  Bearer " + raw + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Iss != "https://idp" || tok.Sub != "user-42" || tok.JTI != "j1" || tok.Sid != "s1" ||
		tok.ClientID != "web" || tok.Azp != "spa" || tok.Iat != 1767222000 || tok.Exp != 1767225600 {
		t.Errorf("claims read wrong: %+v", tok)
	}
	if alg := string(tok.Header["alg"]); alg != `"HS256"` {
		t.Errorf("header alg %s", alg)
	}
	for claim, want := range map[string]string{"client_id": "web,spa", "sub": "user-42", "tenant": "42", "aud": "", "nope": ""} {
		if got := strings.Join(tok.Values(claim), ","); got != want {
			t.Errorf("Values(%s) = %q, want %q", claim, got, want)
		}
	}
	same, _ := ParseToken(unsigned(`{"alg":"none"}`, `{"client_id":"web","azp":"web"}`))
	if got := same.Clients(); len(got) != 1 {
		t.Errorf("client_id = azp counted twice: %v", got)
	}
}

func TestParseTokenRejects(t *testing.T) {
	for name, c := range map[string]struct {
		raw  string
		want error
	}{
		"empty":           {"", ErrNotJWT},
		"two parts":       {"eyJhIjoxfQ.eyJhIjoxfQ", ErrNotJWT},
		"JWE":             {"a.b.c.d.e", ErrEncrypted},
		"payload not b64": {"eyJhIjoxfQ.!!!.c2ln", ErrNotJWT},
		"padded":          {"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9=.c2ln", ErrNotJWT},
		"payload array":   {unsigned(`{"alg":"HS256"}`, `["sub"]`), ErrNotJWT},
		"trailing":        {unsigned(`{"alg":"HS256"}`, `{"sub":"u"} {}`), ErrNotJWT},
		"sub a number":    {unsigned(`{"alg":"HS256"}`, `{"sub":42}`), ErrClaims},
		"exp a string":    {unsigned(`{"alg":"HS256"}`, `{"exp":"tomorrow"}`), ErrClaims},
	} {
		if _, err := ParseToken(c.raw); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", name, err, c.want)
		}
	}
}

// FuzzParseToken: any input either parses into a header and claims or fails with one
// of the package's errors.
func FuzzParseToken(f *testing.F) {
	f.Add(unsigned(`{"alg":"HS256"}`, `{"sub":"u","iat":1,"exp":2,"client_id":"c"}`))
	f.Add("Bearer " + unsigned(`{"alg":"HS256","kid":"k"}`, `{"jti":"j","tenant":7}`))
	f.Add("a.b.c.d.e")
	f.Add("..")
	f.Add(unsigned(`{}`, `{"exp":1e300}`))
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := ParseToken(raw)
		if err != nil {
			if !errors.Is(err, ErrNotJWT) && !errors.Is(err, ErrEncrypted) && !errors.Is(err, ErrClaims) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if tok.Claims == nil || tok.Header == nil {
			t.Fatal("parsed without a header or claims")
		}
		if cs := tok.Clients(); len(cs) == 2 && cs[0] == cs[1] {
			t.Fatalf("client counted twice: %v", cs)
		}
		for _, c := range []string{"sub", "sid", "client_id", "tenant"} {
			for _, v := range tok.Values(c) {
				if v == "" {
					t.Fatalf("Values(%s) holds an empty value", c)
				}
			}
		}
	})
}

func TestNeedles(t *testing.T) {
	tok, err := ParseToken(unsigned(`{"alg":"HS256"}`, `{"iss":"https://idp","sub":"u","jti":"j","client_id":"c","azp":"c","tenant":7,"aud":["a"],"exp":9}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tok.Needles(nil), ","); got != "j,c,9,u,7" {
		t.Errorf("Needles(nil) = %s", got)
	}
	if got := strings.Join(tok.Needles([]string{"iss"}), ","); got != "j,c,9,https://idp,u,7" {
		t.Errorf("Needles(iss) = %s", got)
	}
}
