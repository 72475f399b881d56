package authz

import (
	"strings"
	"testing"
	"time"
)

func TestBearerToken(t *testing.T) {
	const jws = "aGVhZA.cGF5bG9hZA.c2ln"
	cases := []struct {
		header string
		token  string
		reason Reason
	}{
		{"", "", ReasonMissingToken},
		{"Bearer " + jws, jws, ReasonOK},
		{"bearer " + jws, jws, ReasonOK},
		{"BEARER   " + jws + "  ", jws, ReasonOK},
		{"Bearer\t" + jws, jws, ReasonOK},
		{"Bearer", "", ReasonWrongScheme},
		{"Bearer ", "", ReasonMalformed},
		{"Bearerx " + jws, "", ReasonWrongScheme},
		{"Basic " + jws, "", ReasonWrongScheme},
		{"Token " + jws, "", ReasonWrongScheme},
		{jws, "", ReasonWrongScheme},
		{"Bearer " + jws + "," + "Bearer " + jws, "", ReasonMalformed},
		{"Bearer " + jws + " " + jws, "", ReasonMalformed},
		{"Bearer a.b", "", ReasonMalformed},
		{"Bearer a.b.c.d", "", ReasonMalformed},
		{"Bearer a+b.c/d.e=", "", ReasonMalformed},
		{"Bearer a.b.\xff", "", ReasonMalformed},
		{"Bearer " + strings.Repeat("a", MaxTokenBytes) + "..", "", ReasonMalformed},
	}
	for _, c := range cases {
		tok, r := BearerToken(c.header)
		if tok != c.token || r != c.reason {
			t.Errorf("BearerToken(%.40q) = %q, %v; want %q, %v", c.header, tok, r, c.token, c.reason)
		}
	}
}

func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"", "Bearer a.b.c", "bearer  x.y.z ", "Basic abc", "Bearer a.b.c,Bearer d.e.f", "Bearer \x00.\x01.\x02"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		tok, r := BearerToken(header)
		if r != ReasonOK {
			if tok != "" {
				t.Fatal("token returned with an error")
			}
			return
		}
		if len(tok) > MaxTokenBytes || strings.Count(tok, ".") != 2 || strings.ContainsAny(tok, " ,\t") {
			t.Fatalf("accepted %q", tok)
		}
		if !strings.Contains(header, tok) {
			t.Fatal("token not taken from the header")
		}
	})
}

// FuzzDecide runs the whole token path (extraction, parse, verify, lookup) on any
// header: nothing panics, and only a token the issuer really signed is allowed.
func FuzzDecide(f *testing.F) {
	e := newTestEnv(f)
	valid := map[string]bool{}
	for _, tok := range []string{e.ed.Token("alice", time.Hour, nil), e.rsa.Token("bob", time.Hour, nil)} {
		valid[tok] = true
		f.Add("Bearer " + tok)
	}
	f.Add("Bearer " + noneToken(validClaims(e)))
	f.Add("Bearer eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo")
	f.Add("Bearer eyJhbGciOiJFZERTQSIsImtpZCI6Ii4uLy4uL2V0Yy9wYXNzd2QifQ.e30.AAAA")
	f.Fuzz(func(t *testing.T, header string) {
		d := e.a.Decide(header, time.Now())
		if d.Reason >= numReasons {
			t.Fatalf("unknown reason %d", d.Reason)
		}
		if d.Allowed() {
			tok, _ := BearerToken(header)
			if !valid[tok] {
				t.Fatalf("allowed a token nobody signed: %q", header)
			}
		}
	})
}
