package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/revoked-dev/revoked/authz"
	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/jwtkeys"
	revsync "github.com/revoked-dev/revoked/sync"
)

var (
	testNow    = time.Unix(1767225600, 0)
	testPolicy = Policy{
		ExtraClaims: []string{"tenant"},
		Retention:   blocklist.Retention{Lifetime: 24 * time.Hour, Leeway: 30 * time.Second},
	}
)

func parse(t testing.TB, claims jwt.MapClaims) *Token {
	t.Helper()
	tok, err := ParseToken(sign(t, claims))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestMatch(t *testing.T) {
	now := testNow.Unix()
	tok := parse(t, jwt.MapClaims{"iss": "https://idp", "sub": "u1", "jti": "j1", "sid": "s1",
		"client_id": "web", "azp": "spa", "iat": now - 600, "exp": now + 3000, "tenant": 7, "email": "a@b"})
	noIat := parse(t, jwt.MapClaims{"sub": "u1", "exp": now + 3000})
	cut := func(claim, value string, nb int64) event.Event {
		return event.Event{Type: event.TypeCutoff, Claim: claim, Value: value, NotBefore: nb}
	}
	jti := event.Event{Type: event.TypeJTI, JTI: "j1", Exp: now + 3000}
	with := func(ev event.Event, f func(*event.Event)) event.Event { f(&ev); return ev }
	for name, c := range map[string]struct {
		tok    *Token
		ev     event.Event
		stored time.Time
		want   Outcome
	}{
		"jti":                         {tok, jti, testNow, Revokes},
		"jti of another token":        {tok, with(jti, func(e *event.Event) { e.JTI = "j2" }), testNow, NoMatch},
		"jti of the issuer":           {tok, with(jti, func(e *event.Event) { e.Iss = "https://idp" }), testNow, Revokes},
		"jti of another issuer":       {tok, with(jti, func(e *event.Event) { e.Iss = "https://other" }), testNow, NoMatch},
		"jti past its exp":            {tok, with(jti, func(e *event.Event) { e.Exp = now - 60 }), testNow, Lapsed},
		"jti with a bad reason":       {tok, with(jti, func(e *event.Event) { e.Reason = "because" }), testNow, NotEnforced},
		"sub cutoff after iat":        {tok, cut("sub", "u1", now-300), testNow, Revokes},
		"sub cutoff at iat":           {tok, cut("sub", "u1", now-600), testNow, IssuedAfter},
		"sub cutoff before iat":       {tok, cut("sub", "u1", now-900), testNow, IssuedAfter},
		"cutoff on a token sans iat":  {noIat, cut("sub", "u1", now-86000), testNow, Revokes},
		"cutoff past the window":      {noIat, cut("sub", "u1", now-90000), testNow, Lapsed},
		"other sub":                   {tok, cut("sub", "u2", now), testNow, NoMatch},
		"sid":                         {tok, cut("sid", "s1", now), testNow, Revokes},
		"client_id":                   {tok, cut("client_id", "web", now), testNow, Revokes},
		"client_id matches azp":       {tok, cut("client_id", "spa", now), testNow, Revokes},
		"allowed claim, number":       {tok, cut("tenant", "7", now), testNow, Revokes},
		"claim not allowed":           {tok, cut("email", "a@b", now), testNow, NotEnforced},
		"scoped to the client":        {tok, with(cut("sub", "u1", now), func(e *event.Event) { e.ClientID = "web" }), testNow, Revokes},
		"scoped to the azp":           {tok, with(cut("sub", "u1", now), func(e *event.Event) { e.ClientID = "spa" }), testNow, Revokes},
		"scoped to another client":    {tok, with(cut("sub", "u1", now), func(e *event.Event) { e.ClientID = "billing" }), testNow, NoMatch},
		"scoped, token has no client": {noIat, with(cut("sub", "u1", now), func(e *event.Event) { e.ClientID = "web" }), testNow, NoMatch},
		// The replica bounds not_before by the store time plus a minute.
		"not_before bounded": {tok, cut("sub", "u1", now), testNow.Add(-time.Hour), IssuedAfter},
	} {
		if got := Match(c.tok, &c.ev, c.stored, testNow, testPolicy); got != c.want {
			t.Errorf("%s: %q, want %q", name, got, c.want)
		}
	}
}

// TestMatchAgreesWithSidecar holds Match to the sidecar's own decision: random events
// go through a real replica (revsync.Replica.Apply) into a blocklist.Set, random tokens
// through a real authz.Authorizer; a token is denied as revoked exactly when some
// event Match says Revokes, by jti exactly when a jti event does.
func TestMatchAgreesWithSidecar(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("seed %d", seed)
	nc := testsupport.StartNATS(t).Connect()
	secret := []byte("0123456789abcdef0123456789abcdef")
	keys, err := jwtkeys.New(context.Background(), jwtkeys.Config{HMACSecret: secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	verifier := authz.NewVerifier(keys, authz.VerifierConfig{Leeway: testPolicy.Retention.Leeway, CutoffClaims: testPolicy.ExtraClaims})
	now := testNow.Unix()
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	pickN := func(xs ...int64) int64 { return xs[rng.IntN(len(xs))] }
	revoked, checked := 0, 0
	for trial := range 400 {
		set := blocklist.New()
		r, err := revsync.New(nc, set, revsync.Options{CutoffClaims: testPolicy.ExtraClaims,
			MaxTokenLifetime: testPolicy.Retention.Lifetime, Leeway: testPolicy.Retention.Leeway,
			Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		a := authz.NewAuthorizer(verifier, set, authz.Options{})
		a.SetGate(authz.ReasonOK)
		type stored struct {
			ev event.Event
			at time.Time
		}
		var evs []stored
		for i := range 1 + rng.IntN(6) {
			ev := event.Event{Iss: pick("", "", "i1", "i2"), Reason: pick("", "logout", "logout", "because")}
			if rng.IntN(3) == 0 {
				ev.Type, ev.JTI, ev.Exp = event.TypeJTI, pick("j1", "j2"), pickN(now+3600, now+3600, now-600)
			} else {
				ev.Type, ev.NotBefore = event.TypeCutoff, pickN(now-2500, now-2000, now-1500, now-1000, now-500, now+30, now-90000)
				ev.Claim = pick("sub", "sid", "client_id", "tenant", "email")
				ev.Value = map[string]string{"sub": pick("u1", "u2"), "sid": pick("s1", "s2"),
					"client_id": pick("c1", "c2", "c3"), "tenant": pick("acme", "7"), "email": "a@b"}[ev.Claim]
				if rng.IntN(3) == 0 {
					ev.ClientID = pick("c1", "c2", "c3")
				}
			}
			at := time.Unix(pickN(now-100, now-100, now-2000), 0)
			payload, _ := json.Marshal(ev)
			r.Apply(payload, uint64(i+1), at, testNow)
			evs = append(evs, stored{ev, at})
		}
		for range 12 {
			claims := jwt.MapClaims{"sub": pick("u1", "u2"), "exp": now + 3600}
			for k, v := range map[string]string{"iss": pick("", "i1", "i2"), "jti": pick("", "j1", "j2"),
				"sid": pick("", "s1"), "client_id": pick("", "c1", "c2"), "azp": pick("", "c1", "c3")} {
				if v != "" {
					claims[k] = v
				}
			}
			if iat := pickN(0, now-3000, now-2000, now-1000); iat != 0 {
				claims["iat"] = iat
			}
			switch rng.IntN(3) {
			case 0:
				claims["tenant"] = "acme"
			case 1:
				claims["tenant"] = 7
			}
			claims["email"] = "a@b"
			raw := sign(t, claims)
			tok, err := ParseToken(raw)
			if err != nil {
				t.Fatal(err)
			}
			byJTI, byAny := false, false
			var why []string
			for _, s := range evs {
				o := Match(tok, &s.ev, s.at, testNow, testPolicy)
				if o == Revokes {
					byAny = true
					byJTI = byJTI || s.ev.Type == event.TypeJTI
				}
				why = append(why, fmt.Sprintf("%+v stored %d: %s", s.ev, s.at.Unix(), o))
			}
			d := a.Decide("Bearer "+raw, testNow)
			want := authz.ReasonOK
			switch {
			case byJTI:
				want = authz.ReasonRevokedJTI
			case byAny:
				want = authz.ReasonRevokedCutoff
			}
			checked++
			if want != authz.ReasonOK {
				revoked++
			}
			if d.Reason != want {
				t.Fatalf("trial %d: sidecar says %v, Match says %v\ntoken %v\nevents:\n%v", trial, d.Reason, want, claims, why)
			}
		}
	}
	t.Logf("%d tokens checked, %d revoked", checked, revoked)
	if revoked < checked/10 || revoked > checked*9/10 {
		t.Fatalf("%d of %d tokens revoked: the generator tests too little", revoked, checked)
	}
}
