package blocklist

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestJTI(t *testing.T) {
	s := New()
	k := s.JTIKey("https://idp", "abc")
	if s.HasJTI(k) {
		t.Fatal("empty set has the key")
	}
	if !s.AddJTI(k, 1000) {
		t.Fatal("first add did not grow the set")
	}
	if s.AddJTI(k, 1000) {
		t.Fatal("second add of the same event grew the set")
	}
	if !s.HasJTI(k) {
		t.Fatal("added key missing")
	}
	for _, other := range []Key{s.JTIKey("https://other", "abc"), s.JTIKey("", "abc"), s.JTIKey("https://idp", "abd"), s.JTIKey("https://idpa", "bc")} {
		if s.HasJTI(other) {
			t.Errorf("unrelated key %v matches", other)
		}
	}
	if jti, cutoff := s.Len(); jti != 1 || cutoff != 0 {
		t.Fatalf("Len = %d, %d", jti, cutoff)
	}
}

func TestKeysDependOnSeed(t *testing.T) {
	a, b := New(), New()
	if a.JTIKey("i", "j") == b.JTIKey("i", "j") {
		t.Fatal("two sets share a seed")
	}
	if a.JTIKey("i", "j") != a.JTIKey("i", "j") {
		t.Fatal("key not stable")
	}
	if a.JTIKey("", "x") == a.CutoffKey("", "", "x") {
		t.Fatal("jti and cutoff keys collide")
	}
}

func TestCutoffKeepsMaximum(t *testing.T) {
	s := New()
	k := s.CutoffKey("", "sub", "alice")
	s.AddCutoff(k, 200)
	s.AddCutoff(k, 100) // an older event, replayed out of order
	if nb, ok := s.Cutoff(k); !ok || nb != 200 {
		t.Fatalf("Cutoff = %d, %v; want 200", nb, ok)
	}
	s.AddCutoff(k, 300)
	if nb, _ := s.Cutoff(k); nb != 300 {
		t.Fatalf("Cutoff = %d; want 300", nb)
	}
}

// Applying the same events in any order gives the same answers (CONTRACT section 2).
func TestOrderIndependence(t *testing.T) {
	type op struct {
		cutoff bool
		key    string
		t      int64
	}
	ops := []op{{false, "a", 10}, {true, "u", 50}, {false, "b", 20}, {true, "u", 70}, {true, "v", 5}, {false, "a", 10}}
	apply := func(order []int) *Set {
		s := New()
		for _, i := range order {
			if o := ops[i]; o.cutoff {
				s.AddCutoff(s.CutoffKey("", "sub", o.key), o.t)
			} else {
				s.AddJTI(s.JTIKey("", o.key), o.t)
			}
		}
		return s
	}
	a, b := apply([]int{0, 1, 2, 3, 4, 5}), apply([]int{5, 3, 4, 2, 1, 0})
	for _, k := range []string{"u", "v"} {
		x, _ := a.Cutoff(a.CutoffKey("", "sub", k))
		y, _ := b.Cutoff(b.CutoffKey("", "sub", k))
		if x != y {
			t.Errorf("cutoff %s: %d vs %d", k, x, y)
		}
	}
	aj, ac := a.Len()
	bj, bc := b.Len()
	if aj != bj || ac != bc || aj != 2 || ac != 2 {
		t.Errorf("Len %d,%d vs %d,%d", aj, ac, bj, bc)
	}
}

func TestPurge(t *testing.T) {
	s := New()
	s.AddJTI(s.JTIKey("", "old"), 100)
	s.AddJTI(s.JTIKey("", "live"), 1000)
	s.AddCutoff(s.CutoffKey("", "sub", "old"), 100)
	s.AddCutoff(s.CutoffKey("", "sub", "live"), 900)
	// now=500, grace=10, lifetime=300: jti exp < 490 go; cutoffs with nb < 190 go.
	jti, cutoff := s.Purge(500, Retention{Lifetime: 300 * time.Second, Leeway: 10 * time.Second})
	if jti != 1 || cutoff != 1 {
		t.Fatalf("purged %d, %d; want 1, 1", jti, cutoff)
	}
	if s.HasJTI(s.JTIKey("", "old")) || !s.HasJTI(s.JTIKey("", "live")) {
		t.Fatal("wrong jti purged")
	}
	if _, ok := s.Cutoff(s.CutoffKey("", "sub", "live")); !ok {
		t.Fatal("live cutoff purged")
	}
	if j, c := s.Len(); j != 1 || c != 1 {
		t.Fatalf("Len = %d, %d", j, c)
	}
	// An entry that expires exactly at the limit stays: a token with exp=490 is still
	// accepted at 500 with 10 s of leeway.
	s.AddJTI(s.JTIKey("", "edge"), 490)
	if jti, _ := s.Purge(500, Retention{Lifetime: 300 * time.Second, Leeway: 10 * time.Second}); jti != 0 {
		t.Fatal("purged an entry still inside the leeway")
	}
}

func TestCheck(t *testing.T) {
	s := New()
	const iss = "https://idp"
	claims := []Claim{{"sub", "alice"}, {"sid", "s1"}, {"client_id", "web"}}
	cases := []struct {
		name  string
		setup func(*Set)
		iat   int64
		jti   string
		want  Verdict
	}{
		{"clean", func(*Set) {}, 100, "t1", NotRevoked},
		{"jti scoped", func(s *Set) { s.AddJTI(s.JTIKey(iss, "t1"), 999) }, 100, "t1", RevokedJTI},
		{"jti any issuer", func(s *Set) { s.AddJTI(s.JTIKey("", "t1"), 999) }, 100, "t1", RevokedJTI},
		{"jti other issuer", func(s *Set) { s.AddJTI(s.JTIKey("https://other", "t1"), 999) }, 100, "t1", NotRevoked},
		{"no jti", func(s *Set) { s.AddJTI(s.JTIKey(iss, ""), 999) }, 100, "", NotRevoked},
		{"cutoff after iat", func(s *Set) { s.AddCutoff(s.CutoffKey(iss, "sub", "alice"), 101) }, 100, "t1", RevokedCutoff},
		{"cutoff at iat", func(s *Set) { s.AddCutoff(s.CutoffKey(iss, "sub", "alice"), 100) }, 100, "t1", NotRevoked},
		{"cutoff before iat", func(s *Set) { s.AddCutoff(s.CutoffKey(iss, "sub", "alice"), 50) }, 100, "t1", NotRevoked},
		{"cutoff no iat", func(s *Set) { s.AddCutoff(s.CutoffKey(iss, "sub", "alice"), 50) }, 0, "t1", RevokedCutoff},
		{"cutoff any issuer", func(s *Set) { s.AddCutoff(s.CutoffKey("", "sid", "s1"), 200) }, 100, "t1", RevokedCutoff},
		{"cutoff other issuer", func(s *Set) { s.AddCutoff(s.CutoffKey("https://other", "sid", "s1"), 200) }, 100, "t1", NotRevoked},
		{"cutoff other claim", func(s *Set) { s.AddCutoff(s.CutoffKey(iss, "sid", "alice"), 200) }, 100, "t1", NotRevoked},
		{"cutoff client", func(s *Set) { s.AddCutoff(s.CutoffKey(iss, "client_id", "web"), 200) }, 100, "t1", RevokedCutoff},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := New()
			c.setup(s)
			q := s.NewQuery(iss, c.jti, c.iat, claims)
			if got := s.Check(&q); got != c.want {
				t.Fatalf("Check = %v, want %v", got, c.want)
			}
		})
	}
	_ = s
}

// One writer adding and purging while readers check: run with -race.
func TestConcurrentReadersAndWriter(t *testing.T) {
	s := New()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := s.NewQuery("i", "jti-5", 1, []Claim{{"sub", "u"}})
			for {
				select {
				case <-stop:
					return
				default:
					s.Check(&q)
				}
			}
		}()
	}
	for i := 0; i < 20000; i++ {
		s.AddJTI(s.JTIKey("i", fmt.Sprint("jti-", i)), int64(i))
		if i%1000 == 0 {
			s.Purge(int64(i), Retention{Lifetime: 10 * time.Second})
		}
	}
	close(stop)
	wg.Wait()
	if !s.HasJTI(s.JTIKey("i", "jti-19999")) {
		t.Fatal("last entry missing")
	}
}

// One rule: an entry survives Purge exactly when Retention says it is live, so the
// replica (which skips events Retention calls dead) and Purge never disagree.
func TestRetentionMatchesPurge(t *testing.T) {
	r := Retention{Lifetime: 300 * time.Second, Leeway: 10 * time.Second}
	const now = 10_000
	for v := int64(now - 400); v <= now+20; v++ {
		s := New()
		s.AddJTI(s.JTIKey("", "j"), v)
		s.AddCutoff(s.CutoffKey("", "sub", "u"), v)
		s.Purge(now, r)
		_, cutoffKept := s.Cutoff(s.CutoffKey("", "sub", "u"))
		if jtiKept := s.HasJTI(s.JTIKey("", "j")); jtiKept != r.JTILive(v, now) {
			t.Fatalf("jti exp %d: kept %v, JTILive %v", v, jtiKept, r.JTILive(v, now))
		}
		if cutoffKept != r.CutoffLive(v, now) {
			t.Fatalf("cutoff not_before %d: kept %v, CutoffLive %v", v, cutoffKept, r.CutoffLive(v, now))
		}
	}
}
