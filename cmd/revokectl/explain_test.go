package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/revoked-dev/revoked/audit"
	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/internal/sidecar"
	"github.com/revoked-dev/revoked/publish"
)

const auditIss = "https://idp.example.com"

// auditStream is a stream of thousands of events about other tokens, with a few about
// user-42's token planted among them; planted maps each planted event's note to its
// sequence.
type auditStream struct {
	url     string
	now     int64
	planted map[string]uint64
	events  map[uint64]event.Event
}

// plantedEvents are the events about user-42 (and its token target-jti, session
// sess-9, clients web and spa, tenant acme), keyed by a note saying what each is.
func plantedEvents(now int64) map[string]event.Event {
	cut := func(claim, value string, nb int64) event.Event {
		return event.Event{Type: event.TypeCutoff, Claim: claim, Value: value, NotBefore: nb, Iss: auditIss,
			Reason: "logout", Source: "revokectl", RevokedBy: "admin:7", RevokedAt: now - 60}
	}
	scoped := func(ev event.Event, client string) event.Event { ev.ClientID = client; return ev }
	anyIss := func(ev event.Event) event.Event { ev.Iss = ""; return ev }
	otherIss := func(ev event.Event) event.Event { ev.Iss = "https://other.example.com"; return ev }
	withID := func(ev event.Event, id string) event.Event { ev.EventID = id; return ev }
	jti := event.Event{Type: event.TypeJTI, JTI: "target-jti", Exp: now + 3000, Iss: auditIss, Sub: "user-42",
		Reason: "compromised", Source: "api", RevokedBy: "soc \"night\" shift", RevokedAt: now - 30, EventID: "evt-jti"}
	return map[string]event.Event{
		"jti":                    jti,
		"jti, other issuer":      withID(otherIss(jti), "evt-jti-other"),
		"sub after iat":          cut("sub", "user-42", now-300),
		"sub before iat":         cut("sub", "user-42", now-3600),
		"sub, any issuer":        anyIss(cut("sub", "user-42", now-200)),
		"sub, other issuer":      otherIss(cut("sub", "user-42", now)),
		"sid":                    cut("sid", "sess-9", now-100),
		"client_id via azp":      cut("client_id", "spa", now-100),
		"sub scoped to web":      scoped(cut("sub", "user-42", now-100), "web"),
		"sub scoped to billing":  scoped(cut("sub", "user-42", now-100), "billing"),
		"tenant":                 cut("tenant", "acme", now-100),
		"sub of another user":    cut("sub", "user-42x", now),
		"jti of user-42, other":  {Type: event.TypeJTI, JTI: "other-jti", Exp: now + 3000, Iss: auditIss, Sub: "user-42"},
		"jti of user-42, lapsed": {Type: event.TypeJTI, JTI: "old-jti", Exp: now - 3600, Iss: auditIss, Sub: "user-42"},
		"cutoff on sess-9 other": otherIss(cut("sid", "sess-9", now)),
	}
}

// wantExplain is what explain says of each planted event for targetToken, with and
// without --cutoff-claim tenant; absent: not listed.
var wantExplain = map[string]audit.Outcome{
	"jti":               audit.Revokes,
	"sub after iat":     audit.Revokes,
	"sub before iat":    audit.IssuedAfter,
	"sub, any issuer":   audit.Revokes,
	"sid":               audit.Revokes,
	"client_id via azp": audit.Revokes,
	"sub scoped to web": audit.Revokes,
	"tenant":            audit.NotEnforced,
}

func newAuditStream(t *testing.T, noise int) *auditStream {
	t.Helper()
	srv, js := natsEnv(t)
	s := &auditStream{url: "--nats-url=" + srv.URL(), now: time.Now().Unix(), planted: map[string]uint64{}, events: map[uint64]event.Event{}}
	planted := plantedEvents(s.now)
	notes := make([]string, 0, len(planted))
	for n := range planted {
		notes = append(notes, n)
	}
	slices.Sort(notes)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Noise: other users, sessions and tokens, some with values that contain the
	// planted ones (user-4…, target-jt-…) or are contained in them; every stride-th
	// event is a planted one.
	stride := noise/len(notes) + 1
	evs := make([]event.Event, noise+len(notes))
	for i := range evs {
		if k := i / stride; i%stride == 0 && k < len(notes) {
			evs[i] = planted[notes[k]]
			continue
		}
		switch i % 4 {
		case 0:
			evs[i] = event.Event{Type: event.TypeJTI, JTI: fmt.Sprintf("target-jt-%d", i), Exp: s.now + 3000, Iss: auditIss, Sub: fmt.Sprintf("user-4%d", i)}
		case 1:
			evs[i] = event.Event{Type: event.TypeCutoff, Claim: "sub", Value: fmt.Sprintf("user-%d", i+1000), NotBefore: s.now, Iss: auditIss}
		case 2:
			evs[i] = event.Event{Type: event.TypeCutoff, Claim: "sid", Value: fmt.Sprintf("sess-9%d", i), NotBefore: s.now}
		default:
			evs[i] = event.Event{Type: event.TypeCutoff, Claim: "client_id", Value: fmt.Sprintf("web-%d", i), NotBefore: s.now, ClientID: "spa"}
		}
	}
	var mu sync.Mutex
	pl := publish.New(js, publish.Config{AllowedClaims: []string{"tenant"}}).NewPipeline(ctx, 0, func(tag int, r publish.Result, err error) {
		if err != nil {
			t.Errorf("event %d: %v", tag, err)
			return
		}
		// r.Duplicate: a retry after a lost ack; the sequence is the first copy's.
		mu.Lock()
		defer mu.Unlock()
		s.events[r.Sequence] = evs[tag]
		if k := tag / stride; tag%stride == 0 && k < len(notes) {
			s.planted[notes[k]] = r.Sequence
		}
	})
	for i, ev := range evs {
		if err := pl.Publish(i, ev); err != nil {
			t.Fatal(err)
		}
	}
	pl.Close()
	if err := pl.Err(); err != nil {
		t.Fatal(err)
	}
	if len(s.planted) != len(notes) {
		t.Fatalf("%d planted, want %d", len(s.planted), len(notes))
	}
	return s
}

// targetToken is user-42's token: client web, azp spa, issued 10 minutes ago.
func targetToken(t *testing.T, now int64, extra jwt.MapClaims) string {
	claims := jwt.MapClaims{"iss": auditIss, "sub": "user-42", "jti": "target-jti", "sid": "sess-9",
		"client_id": "web", "azp": "spa", "tenant": "acme", "iat": now - 600, "exp": now + 3000, "aud": "orders"}
	for k, v := range extra {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	return signedToken(t, claims)
}

// explainJSON is explain's --json output.
type explainJSON struct {
	Token struct {
		Header   map[string]any `json:"header"`
		Claims   map[string]any `json:"claims"`
		Verified bool           `json:"verified"`
	} `json:"token"`
	Stream struct {
		Read int    `json:"read"`
		Last uint64 `json:"last_seq"`
	} `json:"stream"`
	Events  []audit.Finding `json:"events"`
	Verdict verdict         `json:"verdict"`
}

func noToken(t *testing.T, raw string, r result) {
	t.Helper()
	sig := raw[strings.LastIndex(raw, ".")+1:]
	payload := strings.Split(raw, ".")[1]
	for name, s := range map[string]string{"token": raw, "signature": sig, "payload segment": payload} {
		if strings.Contains(r.stdout, s) || strings.Contains(r.stderr, s) {
			t.Fatalf("the output holds the %s", name)
		}
	}
}

func TestExplain(t *testing.T) {
	s := newAuditStream(t, 5000)
	raw := targetToken(t, s.now, nil)

	// --json: exactly the planted events that name the token, each with its outcome.
	r := cli(t, raw, "explain", "-", "--json", s.url).want(t, exitFailed)
	noToken(t, raw, r)
	var out explainJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("--json does not parse: %v\n%s", err, r.stdout)
	}
	if out.Token.Verified || out.Token.Claims["sub"] != "user-42" || out.Token.Header["alg"] != "HS256" {
		t.Errorf("token part: %+v", out.Token)
	}
	if out.Stream.Read != 5000+len(s.planted) {
		t.Errorf("read %d events, want %d", out.Stream.Read, 5000+len(s.planted))
	}
	got := map[uint64]audit.Outcome{}
	for _, f := range out.Events {
		got[f.Seq] = f.Outcome
		if ev := s.events[f.Seq]; f.Event != ev {
			t.Errorf("seq %d reported as %+v, stored %+v", f.Seq, f.Event, ev)
		}
	}
	want := map[uint64]audit.Outcome{}
	var by []uint64
	for note, o := range wantExplain {
		want[s.planted[note]] = o
		if o == audit.Revokes {
			by = append(by, s.planted[note])
		}
	}
	slices.Sort(by)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v (planted %v)", got, want, s.planted)
	}
	if !out.Verdict.Revoked || out.Verdict.Expired || fmt.Sprint(out.Verdict.By) != fmt.Sprint(by) ||
		!strings.HasPrefix(out.Verdict.Text, "denied: revoked by ") {
		t.Errorf("verdict %+v, want revoked by %v", out.Verdict, by)
	}

	// The sidecars' --cutoff-claim tenant makes the tenant cutoff count.
	r = cli(t, raw, "explain", "-", "--json", "--cutoff-claim", "tenant", s.url).want(t, exitFailed)
	out = explainJSON{}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(out.Events, func(f audit.Finding) bool { return f.Seq == s.planted["tenant"] }); i < 0 || out.Events[i].Outcome != audit.Revokes {
		t.Errorf("with --cutoff-claim tenant: %+v", out.Events)
	}

	// Text: the claims, each event on a line with its audit fields, the verdict.
	r = cli(t, "", "explain", raw, s.url).want(t, exitFailed)
	noToken(t, raw, r)
	first := slices.Min(by)
	for _, line := range []string{
		"read WITHOUT verifying its signature",
		"  sub        \"user-42\"\n",
		fmt.Sprintf("Stream REVOCATIONS: %d events read (sequences 1 to %d)", 5000+len(s.planted), 5000+len(s.planted)),
		fmt.Sprintf("Events that revoke this token: %d\n", len(by)),
		fmt.Sprintf("seq=%d stored=", s.planted["jti"]),
		`type=jti jti=target-jti exp=`,
		`reason=compromised source=api revoked_by="soc \"night\" shift" revoked_at=`,
		"event_id=evt-jti outcome=revokes\n",
		"Events that name this token but do not revoke it: 2\n",
		"outcome=issued_after",
		`outcome=not_enforced why="event: invalid field: claim \"tenant\" not allowed"`,
		"\nVerdict: denied: revoked by the ",
		fmt.Sprintf(" at sequence %d (", first),
		fmt.Sprintf(", and %d more\n", len(by)-1),
	} {
		if !strings.Contains(r.stdout, line) {
			t.Errorf("text output lacks %q:\n%s", line, r.stdout)
		}
	}
}

func TestExplainVerdicts(t *testing.T) {
	s := newAuditStream(t, 200)
	for name, c := range map[string]struct {
		claims jwt.MapClaims
		code   int
		text   string
	}{
		// Issued after every cutoff, another jti, another client, no sid, another tenant.
		"clean": {jwt.MapClaims{"jti": "fresh", "iat": s.now + 100, "sid": nil, "azp": nil, "tenant": "globex"}, exitOK, "Verdict: not revoked by the stream\n"},
		"clean but expired": {jwt.MapClaims{"jti": "fresh", "iat": s.now - 7200, "exp": s.now - 3600, "sub": "user-7", "sid": nil, "azp": nil},
			exitFailed, "Verdict: not revoked by the stream; expired at "},
		"revoked by a cutoff only": {jwt.MapClaims{"jti": "fresh"}, exitFailed, "Verdict: denied: revoked by the cutoff on "},
		"no iat: every cutoff":     {jwt.MapClaims{"jti": "fresh", "iat": nil}, exitFailed, "Events that revoke this token: 6\n"},
		"no iat: refused anyway":   {jwt.MapClaims{"jti": "fresh", "iat": nil}, exitFailed, "; the sidecars refuse it anyway: it has no iat"},
		"too long-lived": {jwt.MapClaims{"jti": "fresh", "iat": s.now + 100, "exp": s.now + 100 + 25*3600, "sid": nil, "azp": nil, "tenant": "globex"},
			exitFailed, "Verdict: not revoked by the stream; the sidecars refuse it anyway: its lifetime (exp - iat) of 25h0m0s exceeds --max-token-lifetime 24h0m0s\n"},
		"other issuer": {jwt.MapClaims{"iss": "https://other.example.com", "iat": s.now + 100, "sid": nil, "azp": nil},
			exitFailed, "Verdict: denied: revoked by the jti event at sequence"},
	} {
		raw := targetToken(t, s.now, c.claims)
		r := cli(t, raw, "explain", "-", s.url).want(t, c.code)
		noToken(t, raw, r)
		if !strings.Contains(r.stdout, c.text) {
			t.Errorf("%s: output lacks %q:\n%s", name, c.text, r.stdout)
		}
	}
}

func TestTextValue(t *testing.T) {
	for v, want := range map[string]string{
		"admin:7": "admin:7", "soc shift": `"soc shift"`, "a=b": `"a=b"`, "\x1b[31mred": `"\x1b[31mred"`,
		"tab\there": `"tab\there"`, "ünïcode": "ünïcode", `back\slash`: `"back\\slash"`, "": `""`,
	} {
		if got := textValue(v); got != want {
			t.Errorf("textValue(%q) = %s, want %s", v, got, want)
		}
	}
}

// A token's claims may carry what a terminal obeys (JSON lets C1 controls through
// unescaped): explain shows them escaped.
func TestExplainEscapesClaims(t *testing.T) {
	srv, _ := natsEnv(t)
	enc := base64.RawURLEncoding.EncodeToString
	raw := enc([]byte(`{"alg":"HS256","kid":"k\u001b[2J"}`)) + "." +
		enc([]byte("{\"sub\":\"u\u009b31m\",\"auth_time\":\"\u009bx\",\"we ird\":1,\"exp\":4102444800}")) + ".c2ln"
	r := cli(t, raw, "explain", "-", "--nats-url="+srv.URL()).want(t, exitFailed)
	if strings.ContainsAny(r.stdout, "\u009b\u001b") {
		t.Fatalf("an unprintable rune reached the output:\n%q", r.stdout)
	}
	for _, s := range []string{`kid="k\u001b[2J"`, `sub        "u\u009b31m"`, `auth_time  "\u009bx"`, `"we ird"   1`} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("output lacks %s:\n%s", s, r.stdout)
		}
	}
}

func TestExplainRefuses(t *testing.T) {
	for name, c := range map[string]struct {
		stdin string
		args  []string
		code  int
		msg   string
	}{
		"no token":         {"", []string{"explain"}, exitUsage, "want one token"},
		"not a JWT":        {"", []string{"explain", "hello"}, exitUsage, "not a signed JWT"},
		"JWE":              {"a.b.c.d.e", []string{"explain", "-"}, exitUsage, "encrypted token"},
		"no lifetime":      {"", []string{"explain", "x.y.z", "--max-token-lifetime", "0s"}, exitUsage, "--max-token-lifetime must be positive"},
		"malformed claims": {"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjQyfQ.c2ln", []string{"explain", "-"}, exitUsage, "claims a sidecar refuses"},
		"no NATS":          {"", []string{"explain", "--nats-url", "nats://127.0.0.1:1", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln"}, exitNoStream, "NOT read"},
	} {
		r := cli(t, c.stdin, c.args...).want(t, c.code)
		if !strings.Contains(r.stderr, c.msg) {
			t.Errorf("%s: stderr lacks %q:\n%s", name, c.msg, r.stderr)
		}
		if c.stdin != "" && strings.Contains(r.stdout+r.stderr, c.stdin) {
			t.Errorf("%s: the token is echoed", name)
		}
	}
}

// TestExplainAgreesWithSidecar asks a real sidecar (revokectl check) and explain about
// the same tokens over the same stream of random events: explain says "revoked"
// exactly when the sidecar denies the token as revoked.
func TestExplainAgreesWithSidecar(t *testing.T) {
	const iss = "https://idp.example.com"
	ns, js := natsEnv(t)
	natsFlag := "--nats-url=" + ns.URL()
	issuer, err := devissuer.New("ES256", iss, "")
	if err != nil {
		t.Fatal(err)
	}
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, issuer.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := sidecar.ParseSettings([]string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "", "--admin-addr", "127.0.0.1:0",
		"--nats-url", ns.URL(), "--jwks-file", jwks, "--cutoff-claim", "tenant"})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := sidecar.Start(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sc.Close)
	poll(t, "sidecar ready", sc.Ready)
	addr := "--addr=" + sc.GRPCAddr()

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 12))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	now := time.Now().Unix()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pl := publish.New(js, publish.Config{AllowedClaims: []string{"tenant", "email"}}).NewPipeline(ctx, 0, func(tag int, _ publish.Result, err error) {
		if err != nil {
			t.Errorf("event %d: %v", tag, err)
		}
	})
	for i := range 300 {
		ev := event.Event{Iss: pick("", "", iss, "https://other.example.com"), EventID: fmt.Sprint("e", i)}
		if rng.IntN(4) == 0 {
			ev.Type, ev.JTI, ev.Exp = event.TypeJTI, fmt.Sprint("j", rng.IntN(300)), now+3600
		} else {
			ev.Type, ev.NotBefore = event.TypeCutoff, now-int64(rng.IntN(4000))+30
			ev.Claim = pick("sub", "sid", "client_id", "tenant", "email")
			ev.Value = fmt.Sprint(map[string]string{"sub": "u", "sid": "s", "client_id": "c", "tenant": "t", "email": "m"}[ev.Claim], rng.IntN(300))
			if rng.IntN(3) == 0 {
				ev.ClientID = fmt.Sprint("c", rng.IntN(10))
			}
		}
		if err := pl.Publish(i, ev); err != nil {
			t.Fatal(err)
		}
	}
	pl.Close()
	// The sentinel, last: once the sidecar denies it, it has applied every event.
	sentinel := issuer.Token("sentinel", time.Hour, nil)
	cli(t, "", "revoke", "token", sentinel, natsFlag).want(t, exitOK)
	waitDenied(t, addr, sentinel)

	const tokens = 150
	revoked := 0
	for range tokens {
		claims := jwt.MapClaims{"jti": fmt.Sprint("j", rng.IntN(300)), "iat": now - int64(rng.IntN(4000)), "sid": nil, "client_id": nil, "azp": nil, "tenant": nil}
		for name, prefix := range map[string]string{"sid": "s", "client_id": "c", "azp": "c", "tenant": "t", "email": "m"} {
			if n := 300; rng.IntN(3) > 0 {
				if name == "client_id" || name == "azp" {
					n = 10 // the clients cutoffs are scoped to
				}
				claims[name] = fmt.Sprint(prefix, rng.IntN(n))
			}
		}
		raw := issuer.Token(fmt.Sprint("u", rng.IntN(300)), time.Hour, claims)
		check := cli(t, "", "check", addr, raw)
		explain := cli(t, raw, "explain", "-", "--cutoff-claim", "tenant", natsFlag)
		denied := check.code == exitFailed && strings.Contains(check.stdout, "token revoked")
		if check.code != exitOK && !denied {
			t.Fatalf("check: exit %d\n%s%s", check.code, check.stdout, check.stderr)
		}
		if (explain.code == exitFailed) != denied || denied != strings.Contains(explain.stdout, "Verdict: denied: revoked by") {
			t.Fatalf("check exit %d, explain exit %d\ncheck: %s\nexplain:\n%s%s", check.code, explain.code, check.stdout, explain.stdout, explain.stderr)
		}
		if denied {
			revoked++
		}
	}
	t.Logf("%d of %d tokens revoked", revoked, tokens)
	if revoked < tokens/10 || revoked > tokens*9/10 {
		t.Fatalf("%d of %d tokens revoked: the events test too little", revoked, tokens)
	}
}
