package blocklist

import (
	"testing"
	"time"
)

// A client-scoped cutoff (CONTRACT section 2, client_id) revokes the tokens of that
// client only: the token's client_id or its azp must equal it.
func TestClientScopedCutoff(t *testing.T) {
	const iss = "https://idp"
	type token struct {
		clientID, azp string
		iat           int64
	}
	query := func(s *Set, tok token) Query {
		claims := []Claim{{"sub", "alice"}, {"sid", ""}, {"client_id", tok.clientID}}
		if tok.azp != "" && tok.azp != tok.clientID {
			claims = append(claims, Claim{"client_id", tok.azp})
		}
		return s.NewQuery(iss, "t1", tok.iat, claims, tok.clientID, tok.azp)
	}
	web := token{clientID: "web", iat: 100}
	cases := []struct {
		name  string
		setup func(*Set)
		tok   token
		want  Verdict
	}{
		{"scoped to its client", func(s *Set) { s.AddCutoff(s.ClientCutoffKey(iss, "sub", "alice", "web"), 200) }, web, RevokedCutoff},
		{"scoped to another client", func(s *Set) { s.AddCutoff(s.ClientCutoffKey(iss, "sub", "alice", "mobile"), 200) }, web, NotRevoked},
		{"scoped, any issuer", func(s *Set) { s.AddCutoff(s.ClientCutoffKey("", "sub", "alice", "web"), 200) }, web, RevokedCutoff},
		{"scoped, other issuer", func(s *Set) { s.AddCutoff(s.ClientCutoffKey("https://other", "sub", "alice", "web"), 200) }, web, NotRevoked},
		{"scoped, other user", func(s *Set) { s.AddCutoff(s.ClientCutoffKey(iss, "sub", "bob", "web"), 200) }, web, NotRevoked},
		{"scoped, issued after", func(s *Set) { s.AddCutoff(s.ClientCutoffKey(iss, "sub", "alice", "web"), 100) }, web, NotRevoked},
		{"scoped, token without iat", func(s *Set) { s.AddCutoff(s.ClientCutoffKey(iss, "sub", "alice", "web"), 50) }, token{clientID: "web"}, RevokedCutoff},
		{"scoped to azp", func(s *Set) { s.AddCutoff(s.ClientCutoffKey(iss, "sub", "alice", "spa"), 200) }, token{azp: "spa", iat: 100}, RevokedCutoff},
		{"scoped to azp beside client_id", func(s *Set) { s.AddCutoff(s.ClientCutoffKey(iss, "sub", "alice", "spa"), 200) }, token{clientID: "web", azp: "spa", iat: 100}, RevokedCutoff},
		{"scoped, token without client", func(s *Set) { s.AddCutoff(s.ClientCutoffKey(iss, "sub", "alice", "web"), 200) }, token{iat: 100}, NotRevoked},
		{"unscoped revokes every client", func(s *Set) { s.AddCutoff(s.CutoffKey(iss, "sub", "alice"), 200) }, token{clientID: "mobile", iat: 100}, RevokedCutoff},
		{"empty client is unscoped", func(s *Set) { s.AddCutoff(s.ClientCutoffKey(iss, "sub", "alice", ""), 200) }, token{iat: 100}, RevokedCutoff},
		{"scoped on the client claim", func(s *Set) { s.AddCutoff(s.ClientCutoffKey(iss, "client_id", "web", "web"), 200) }, web, RevokedCutoff},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := New()
			c.setup(s)
			q := query(s, c.tok)
			if got := s.Check(&q); got != c.want {
				t.Fatalf("Check = %v, want %v", got, c.want)
			}
		})
	}
}

// The scoped and the unscoped cutoff of a key are two entries, each keeping its own
// greatest not_before; one never raises or hides the other.
func TestClientScopedCutoffKeepsMaximumPerKey(t *testing.T) {
	s := New()
	unscoped := s.CutoffKey("", "sub", "alice")
	web := s.ClientCutoffKey("", "sub", "alice", "web")
	mobile := s.ClientCutoffKey("", "sub", "alice", "mobile")
	if unscoped == web || web == mobile || s.ClientCutoffKey("", "sub", "alice", "") != unscoped {
		t.Fatal("scoped keys collide")
	}
	s.AddCutoff(web, 300)
	s.AddCutoff(web, 200) // older, replayed out of order
	s.AddCutoff(unscoped, 100)
	s.AddCutoff(mobile, 150)
	for k, want := range map[Key]int64{unscoped: 100, web: 300, mobile: 150} {
		if nb, ok := s.Cutoff(k); !ok || nb != want {
			t.Errorf("Cutoff = %d, %v; want %d", nb, ok, want)
		}
	}
	if _, c := s.Len(); c != 3 {
		t.Fatalf("cutoffs = %d, want 3", c)
	}
	q := s.NewQuery("", "", 250, []Claim{{"sub", "alice"}}, "mobile")
	if s.Check(&q) != NotRevoked {
		t.Fatal("mobile token issued at 250 revoked by web's cutoff at 300")
	}
	q = s.NewQuery("", "", 250, []Claim{{"sub", "alice"}}, "web", "mobile")
	if s.Check(&q) != RevokedCutoff {
		t.Fatal("token of web (azp mobile) issued at 250 not revoked by web's cutoff at 300")
	}
}

// Purge keeps the count of scoped cutoffs right: Check skips the scoped lookups only
// while none is stored, so a count left too low would hide a revocation.
func TestPurgeCountsScopedCutoffs(t *testing.T) {
	s := New()
	r := Retention{Lifetime: 300 * time.Second, Leeway: 10 * time.Second}
	s.AddCutoff(s.ClientCutoffKey("", "sub", "old", "web"), 100)
	s.AddCutoff(s.ClientCutoffKey("", "sub", "live", "web"), 900)
	s.AddCutoff(s.CutoffKey("", "sub", "old"), 100)
	s.AddJTI(s.JTIKey("", "j"), 100)
	if got := scopedCount(&s.cutoff); got != 2 {
		t.Fatalf("scoped = %d, want 2", got)
	}
	if _, c := s.Purge(500, r); c != 2 {
		t.Fatalf("purged %d cutoffs, want 2", c)
	}
	if got := scopedCount(&s.cutoff); got != 1 {
		t.Fatalf("scoped after purge = %d, want 1", got)
	}
	q := s.NewQuery("", "", 800, []Claim{{"sub", "live"}}, "web")
	if s.Check(&q) != RevokedCutoff {
		t.Fatal("live scoped cutoff lost")
	}
	s.Purge(2000, r)
	if got := scopedCount(&s.cutoff); got != 0 {
		t.Fatalf("scoped after purging all = %d, want 0", got)
	}
	if got := scopedCount(&s.jti); got != 0 {
		t.Fatalf("jti keys counted as scoped: %d", got)
	}
}

func scopedCount(t *table) (n int64) {
	for i := range t.scoped {
		n += t.scoped[i].Load()
	}
	return n
}

// Scoped cutoffs are counted per claim class, and Check skips the scoped lookups of a
// class with none: a scoped cutoff of each class still matches, and one on an
// operator's own claim shares the last class with every other such claim.
func TestScopedCutoffClasses(t *testing.T) {
	claims := []Claim{{"sub", "u"}, {"sid", "s"}, {"client_id", "c"}, {"tenant", "t"}, {"org", "o"}}
	for _, c := range claims {
		s := New()
		s.AddCutoff(s.ClientCutoffKey("", c.Name, c.Value, "web"), 200)
		q := s.NewQuery("i", "", 100, claims, "web")
		if got := s.Check(&q); got != RevokedCutoff {
			t.Errorf("cutoff on %s scoped to web: Check = %v", c.Name, got)
		}
		q = s.NewQuery("i", "", 100, claims, "mobile")
		if got := s.Check(&q); got != NotRevoked {
			t.Errorf("cutoff on %s scoped to web, token of mobile: Check = %v", c.Name, got)
		}
	}
	s := New()
	for _, c := range claims {
		s.AddCutoff(s.ClientCutoffKey("", c.Name, c.Value, "web"), 200)
	}
	for class, want := range []int64{1, 1, 1, 2} {
		if got := s.cutoff.scoped[class].Load(); got != want {
			t.Errorf("class %d: %d scoped cutoffs, want %d", class, got, want)
		}
	}
}

// FuzzCheckMatchesModel applies cutoffs (scoped or not), purges and queries decoded
// from the input to the Set and to a plain map model of CONTRACT section 2 (the
// greatest not_before per (iss, claim, value, client_id)), and checks every answer.
func FuzzCheckMatchesModel(f *testing.F) {
	f.Add([]byte{0x00, 0x11, 0x22, 0x33, 0x80, 0x01})
	f.Add([]byte{0x05, 0x0a, 0x7f, 0x41, 0xc0, 0x23, 0x88, 0x10, 0x20})
	f.Add([]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x0f, 0x1e, 0x2d, 0x3c})
	f.Add([]byte{0x3f, 0x3f, 0x3f, 0x3f, 0xbf, 0xbf, 0x40, 0x40, 0xff})
	f.Fuzz(func(t *testing.T, ops []byte) {
		issuers := []string{"", "i1", "i2"}
		claims := []string{"sub", "sid", "client_id", "org"}
		values := []string{"a", "b", "web"}
		clients := []string{"", "web", "mob"}
		type mkey struct{ iss, claim, value, client string }
		model := map[mkey]int64{}
		s := New()
		r := Retention{Lifetime: 40 * time.Second, Leeway: 5 * time.Second}
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i], ops[i+1]
			switch {
			case op&0xc0 == 0xc0: // purge at arg
				now := int64(arg)
				s.Purge(now, r)
				for k, nb := range model {
					if !r.CutoffLive(nb, now) {
						delete(model, k)
					}
				}
			case op&0x80 == 0: // add a cutoff
				k := mkey{issuers[int(op)%3], claims[int(op/3)%4], values[int(op/12)%3], clients[int(arg)%3]}
				nb := int64(arg/3) + 1
				s.AddCutoff(s.ClientCutoffKey(k.iss, k.claim, k.value, k.client), nb)
				model[k] = max(model[k], nb)
			default: // query a token
				iss := issuers[1+int(op)%2]
				sub, sid := values[int(op/2)%3], values[int(op/6)%2]
				clientID, azp := clients[int(arg)%3], clients[int(arg/3)%3]
				iat := int64(arg / 9)
				tc := []Claim{{"sub", sub}, {"sid", sid}, {"client_id", clientID}, {"org", values[int(op/24)%2]}}
				if azp != "" && azp != clientID {
					tc = append(tc, Claim{"client_id", azp})
				}
				want := NotRevoked
				for k, nb := range model {
					claimOK := false
					for _, c := range tc {
						claimOK = claimOK || c.Value != "" && c.Name == k.claim && c.Value == k.value
					}
					clientOK := k.client == "" || k.client == clientID || k.client == azp
					if (k.iss == "" || k.iss == iss) && claimOK && clientOK && (iat == 0 || iat < nb) {
						want = RevokedCutoff
					}
				}
				q := s.NewQuery(iss, "", iat, tc, clientID, azp)
				if got := s.Check(&q); got != want {
					t.Fatalf("op %d: token iss=%s sub=%s sid=%s client_id=%q azp=%q iat=%d: Check = %v, model %v (%v)",
						i, iss, sub, sid, clientID, azp, iat, got, want, model)
				}
			}
			scoped := 0
			for k := range model {
				if k.client != "" {
					scoped++
				}
			}
			if _, c := s.Len(); c != len(model) || int(scopedCount(&s.cutoff)) != scoped {
				t.Fatalf("op %d: %d cutoffs (%d scoped), model %d (%d)", i, c, scopedCount(&s.cutoff), len(model), scoped)
			}
		}
	})
}
