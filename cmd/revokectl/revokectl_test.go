package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
)

type result struct {
	code           int
	stdout, stderr string
}

// cli runs revokectl in-process with stdin and the arguments.
func cli(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, args, strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

func (r result) want(t testing.TB, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	return r
}

// natsEnv runs a server with the stream and returns it and its JetStream.
func natsEnv(t *testing.T) (*testsupport.NATS, jetstream.JetStream) {
	t.Helper()
	srv := testsupport.StartNATS(t)
	return srv, srv.CreateStream(stream.Settings{})
}

// stored returns the events in the stream, in order.
func stored(t *testing.T, js jetstream.JetStream) []event.Event {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, event.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var evs []event.Event
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := event.Decode(m.Data, nil)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func TestHelp(t *testing.T) {
	r := cli(t, "", "--help").want(t, exitOK)
	for _, c := range commands {
		if !strings.Contains(r.stdout, c.path) {
			t.Errorf("top help lacks %q", c.path)
		}
		h := cli(t, "", append(strings.Fields(c.path), "--help")...).want(t, exitOK)
		for _, s := range []string{"Usage:\n  revokectl " + c.path, "Flags:", "-h, --help", "REVOKECTL_"} {
			if !strings.Contains(h.stdout, s) {
				t.Errorf("%s --help lacks %q:\n%s", c.path, s, h.stdout)
			}
		}
		if c.nats && !strings.Contains(h.stdout, "Connection flags:\n") {
			t.Errorf("%s --help lacks the connection flags", c.path)
		}
		if !strings.Contains(h.stdout, "Examples:") {
			t.Errorf("%s --help has no examples", c.path)
		}
	}
	if h := cli(t, "", "help", "revoke", "sid").want(t, exitOK); !strings.Contains(h.stdout, "revokectl revoke sid VALUE") {
		t.Errorf("help revoke sid:\n%s", h.stdout)
	}
	for name, args := range map[string][]string{
		"no command":      nil,
		"unknown command": {"frobnicate"},
		"group only":      {"revoke"},
		"unknown sub":     {"stream", "drop"},
		"unknown flag":    {"stream", "info", "--colour"},
	} {
		r := cli(t, "", args...).want(t, exitUsage)
		if r.stderr == "" {
			t.Errorf("%s: nothing said on stderr", name)
		}
	}
}

func TestStreamInitAndInfo(t *testing.T) {
	srv := testsupport.StartNATS(t)
	url := "--nats-url=" + srv.URL()
	r := cli(t, "", "stream", "init", url, "--max-token-lifetime", "12h", "--duplicate-window", "5m").want(t, exitOK)
	if !strings.Contains(r.stdout, "stream REVOCATIONS created") {
		t.Errorf("init said %q", r.stdout)
	}
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), "REVOCATIONS")
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if cfg.MaxAge != 12*time.Hour+stream.WindowMargin || cfg.Discard != jetstream.DiscardNew || cfg.MaxMsgs != stream.DefaultMaxMsgs || cfg.Duplicates != 5*time.Minute || cfg.Storage != jetstream.FileStorage ||
		len(cfg.Subjects) != 1 || cfg.Subjects[0] != "revocations.>" || cfg.Replicas != 1 {
		t.Fatalf("config %+v", cfg)
	}
	r = cli(t, "", "stream", "init", url).want(t, exitOK)
	if !strings.Contains(r.stdout, "updated") || !strings.Contains(r.stdout, "max age 24h10m0s") {
		t.Errorf("second init said %q", r.stdout)
	}

	r = cli(t, "", "stream", "info", url).want(t, exitOK)
	if !strings.Contains(r.stdout, "messages          0") || !strings.Contains(r.stdout, "no events") {
		t.Errorf("empty info:\n%s", r.stdout)
	}
	for i := range 3 {
		cli(t, "", "revoke", "jti", fmt.Sprint("j", i), "--exp", "+1h", url).want(t, exitOK)
	}
	r = cli(t, "", "stream", "info", url).want(t, exitOK)
	for _, s := range []string{"messages          3", "first sequence    1 at ", "last sequence     3 at ", "age  ", "max age           24h10m0s", "max messages      4000000 (discard new)", "duplicate window  2m0s", "bytes  "} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("info lacks %q:\n%s", s, r.stdout)
		}
	}
	r = cli(t, "", "stream", "info", url, "--json").want(t, exitOK)
	var s streamSummary
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatal(err)
	}
	if s.Messages != 3 || s.FirstSeq != 1 || s.LastSeq != 3 || s.Bytes == 0 || s.AgeSeconds < 0 {
		t.Errorf("json info %+v", s)
	}

	cli(t, "", "stream", "info", url, "--stream", "NOPE").want(t, exitFailed)
	// The stream keeps 24h10m: enough for 24h tokens, not for 25h ones.
	r = cli(t, "", "stream", "info", url, "--max-token-lifetime", "25h").want(t, exitFailed)
	if !strings.Contains(r.stderr, "less than the revocation window") {
		t.Errorf("window check said %q", r.stderr)
	}
	for _, bad := range [][]string{
		{"--duplicate-window", "1m"},
		{"--replicas", "0"},
		{"--max-token-lifetime", "0s"},
		{"--max-msgs", "0"},
		{"extra-arg"},
	} {
		cli(t, "", append([]string{"stream", "init", url}, bad...)...).want(t, exitUsage)
	}
}

func TestRevokeJTI(t *testing.T) {
	srv, js := natsEnv(t)
	url := "--nats-url=" + srv.URL()
	r := cli(t, "", "revoke", "jti", "abc-1", "--exp", "2026-01-01T00:00:00Z", "--iss", "https://idp.example.com",
		"--reason", "compromised", "--by", "admin:7", url).want(t, exitOK)
	if !strings.Contains(r.stdout, "stream REVOCATIONS, sequence 1") {
		t.Errorf("stdout %q", r.stdout)
	}
	evs := stored(t, js)
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	ev := evs[0]
	if ev.Type != "jti" || ev.JTI != "abc-1" || ev.Exp != 1767225600 || ev.Iss != "https://idp.example.com" ||
		ev.Reason != "compromised" || ev.RevokedBy != "admin:7" || time.Since(time.Unix(ev.RevokedAt, 0)) > time.Minute {
		t.Errorf("stored %+v", ev)
	}

	// The same event_id twice is stored once.
	cli(t, "", "revoke", "jti", "abc-2", "--exp", "1767225600", "--event-id", "e-1", url).want(t, exitOK)
	r = cli(t, "", "revoke", "jti", "abc-2", "--exp", "1767225600", "--event-id", "e-1", url).want(t, exitOK)
	if !strings.Contains(r.stdout, "duplicate") || !strings.Contains(r.stdout, "sequence 2") {
		t.Errorf("second publication said %q", r.stdout)
	}
	if n := len(stored(t, js)); n != 2 {
		t.Fatalf("%d events, want 2", n)
	}

	// The environment gives the URL too.
	t.Setenv("REVOKECTL_NATS_URL", srv.URL())
	cli(t, "", "revoke", "jti", "abc-3", "--exp", "+1h").want(t, exitOK)

	for name, args := range map[string][]string{
		"no exp":       {"revoke", "jti", "x"},
		"bad exp":      {"revoke", "jti", "x", "--exp", "tomorrow"},
		"no jti":       {"revoke", "jti", "--exp", "+1h"},
		"two jtis":     {"revoke", "jti", "x", "y", "--exp", "+1h"},
		"bad reason":   {"revoke", "jti", "x", "--exp", "+1h", "--reason", "because"},
		"jti too long": {"revoke", "jti", strings.Repeat("x", 300), "--exp", "+1h"},
	} {
		r := cli(t, "", args...).want(t, exitUsage)
		if r.stdout != "" || !strings.Contains(r.stderr, "--help") {
			t.Errorf("%s: stdout %q stderr %q", name, r.stdout, r.stderr)
		}
	}
	if n := len(stored(t, js)); n != 3 {
		t.Fatalf("%d events, want 3", n)
	}
}

func signedToken(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRevokeToken(t *testing.T) {
	srv, js := natsEnv(t)
	url := "--nats-url=" + srv.URL()
	exp := time.Now().Add(time.Hour).Unix()
	tok := signedToken(t, jwt.MapClaims{"jti": "tok-1", "exp": exp, "iss": "https://idp.example.com", "sub": "user-42", "iat": time.Now().Unix()})

	r := cli(t, "", "revoke", "token", tok, "--reason", "logout", url).want(t, exitOK)
	if strings.Contains(r.stdout+r.stderr, tok) {
		t.Error("the token was printed")
	}
	if !strings.Contains(r.stdout, "sequence 1") {
		t.Errorf("stdout %q", r.stdout)
	}
	tok2 := signedToken(t, jwt.MapClaims{"jti": "tok-2", "exp": exp, "iss": "https://idp.example.com"})
	cli(t, tok2+"\n", "revoke", "token", "-", url).want(t, exitOK)
	evs := stored(t, js)
	want := []event.Event{
		{Type: "jti", JTI: "tok-1", Exp: exp, Iss: "https://idp.example.com", Sub: "user-42", Reason: "logout", Source: "revokectl"},
		{Type: "jti", JTI: "tok-2", Exp: exp, Iss: "https://idp.example.com", Reason: "admin_revoke", Source: "revokectl"},
	}
	if len(evs) != 2 {
		t.Fatalf("%d events", len(evs))
	}
	for i := range want {
		got := evs[i]
		got.RevokedAt, got.RevokedBy = 0, ""
		if got != want[i] {
			t.Errorf("event %d: %+v, want %+v", i, got, want[i])
		}
	}

	for name, tc := range map[string]struct {
		tok  string
		args []string
	}{
		"not a JWT":    {"not.a.jwt", nil},
		"no jti":       {signedToken(t, jwt.MapClaims{"exp": exp}), nil},
		"no exp":       {signedToken(t, jwt.MapClaims{"jti": "x"}), nil},
		"iss conflict": {tok, []string{"--iss", "https://other.example.com"}},
	} {
		r := cli(t, "", append([]string{"revoke", "token", tc.tok, url}, tc.args...)...).want(t, exitUsage)
		if strings.Contains(r.stderr, tc.tok) && len(tc.tok) > 20 {
			t.Errorf("%s: the token was echoed", name)
		}
	}
	if n := len(stored(t, js)); n != 2 {
		t.Fatalf("%d events, want 2", n)
	}
}

func TestRevokeCutoffs(t *testing.T) {
	srv, js := natsEnv(t)
	url := "--nats-url=" + srv.URL()
	before := time.Now().Unix()
	cli(t, "", "revoke", "sub", "user-42", "--reason", "password_change", url).want(t, exitOK)
	after := time.Now().Unix()
	cli(t, "", "revoke", "sid", "s-9", "--not-before", "1767222000", "--iss", "https://idp.example.com", url).want(t, exitOK)
	r := cli(t, "", "revoke", "client", "billing-app", "--not-before", "2026-01-01T00:00:00Z", url).want(t, exitOK)
	if !strings.Contains(r.stdout, "sequence 3") || !strings.Contains(r.stdout, `client_id "billing-app"`) {
		t.Errorf("stdout %q", r.stdout)
	}
	evs := stored(t, js)
	if len(evs) != 3 {
		t.Fatalf("%d events", len(evs))
	}
	if e := evs[0]; e.Type != "cutoff" || e.Claim != "sub" || e.Value != "user-42" || e.Reason != "password_change" ||
		e.NotBefore <= before || e.NotBefore > after+1 {
		t.Errorf("sub cutoff %+v (now %d..%d)", e, before, after)
	}
	if e := evs[1]; e.Claim != "sid" || e.Value != "s-9" || e.NotBefore != 1767222000 || e.Iss != "https://idp.example.com" {
		t.Errorf("sid cutoff %+v", e)
	}
	if e := evs[2]; e.Claim != "client_id" || e.Value != "billing-app" || e.NotBefore != 1767225600 {
		t.Errorf("client cutoff %+v", e)
	}
	cli(t, "", "revoke", "sub", url).want(t, exitUsage)
	cli(t, "", "revoke", "sub", "u", "--not-before", "yesterday", url).want(t, exitUsage)
}

func TestRevokeFailsLoudlyWithoutNATS(t *testing.T) {
	t.Run("server down", func(t *testing.T) {
		srv, _ := natsEnv(t)
		url := "--nats-url=" + srv.URL()
		srv.Stop()
		start := time.Now()
		r := cli(t, "", "revoke", "jti", "x", "--exp", "+1h", url).want(t, exitFailed)
		if r.stdout != "" || !strings.Contains(r.stderr, "NOT revoked") || !strings.Contains(r.stderr, "nats") {
			t.Errorf("stdout %q stderr %q", r.stdout, r.stderr)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("took %v to fail", d)
		}
	})
	t.Run("no stream", func(t *testing.T) {
		srv := testsupport.StartNATS(t)
		r := cli(t, "", "revoke", "sub", "u", "--attempts", "1", "--nats-url", srv.URL()).want(t, exitFailed)
		if !strings.Contains(r.stderr, "NOT revoked") || !strings.Contains(r.stderr, "stream init") {
			t.Errorf("stderr %q", r.stderr)
		}
	})
}

func TestParseTime(t *testing.T) {
	now := time.Unix(1767222000, 0)
	tests := map[string]int64{
		"now":                       1767222000,
		"+1h":                       1767225600,
		"-30m":                      1767220200,
		"1767225600":                1767225600,
		"2026-01-01T00:00:00Z":      1767225600,
		"2026-01-01T01:00:00+01:00": 1767225600,
	}
	for in, want := range tests {
		got, err := parseTime(in, now)
		if err != nil || got != want {
			t.Errorf("parseTime(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "tomorrow", "+1x", "12abc", "2026-01-01"} {
		if _, err := parseTime(bad, now); err == nil {
			t.Errorf("parseTime(%q) accepted", bad)
		}
	}
}

func TestParseInterspersed(t *testing.T) {
	r := cli(t, "", "revoke", "jti", "--exp", "+1h", "--", "--looks-like-a-flag", "--nats-url=nats://127.0.0.1:1")
	// Two positional arguments after "--": a usage error, not an unknown flag.
	if r.code != exitUsage || !strings.Contains(r.stderr, "got 2 arguments") {
		t.Fatalf("%+v", r)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
