package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/revoked-dev/revoked/audit"
)

// historyLines runs history --json and returns its findings, checking that every line
// is one JSON object and that they come oldest first.
func historyLines(t *testing.T, s *auditStream, args ...string) []audit.Finding {
	t.Helper()
	r := cli(t, "", append([]string{"history", "--json", s.url}, args...)...).want(t, exitOK)
	var out []audit.Finding
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var f audit.Finding
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if n := len(out); n > 0 && out[n-1].Seq >= f.Seq {
			t.Fatalf("not oldest first: %d after %d", f.Seq, out[n-1].Seq)
		}
		out = append(out, f)
	}
	return out
}

// seqsOf returns the sequences of the planted events named, sorted.
func (s *auditStream) seqsOf(notes ...string) []uint64 {
	var seqs []uint64
	for _, n := range notes {
		seq, ok := s.planted[n]
		if !ok {
			panic("no planted event " + n)
		}
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	return seqs
}

func seqs(fs []audit.Finding) []uint64 {
	var out []uint64
	for _, f := range fs {
		out = append(out, f.Seq)
	}
	return out
}

func TestHistory(t *testing.T) {
	s := newAuditStream(t, 5000)
	userEvents := []string{"jti", "jti, other issuer", "sub after iat", "sub before iat", "sub, any issuer",
		"sub, other issuer", "sub scoped to web", "sub scoped to billing", "jti of user-42, other", "jti of user-42, lapsed"}
	var spa []uint64 // every cutoff on client spa, or scoped to it: a quarter of the noise
	for seq, ev := range s.events {
		if ev.ClientID == "spa" || ev.Claim == "client_id" && ev.Value == "spa" {
			spa = append(spa, seq)
		}
	}
	slices.Sort(spa)
	for name, c := range map[string]struct {
		args []string
		want []uint64
	}{
		"sub":         {[]string{"--sub", "user-42"}, s.seqsOf(userEvents...)},
		"sub and iss": {[]string{"--sub", "user-42", "--iss", auditIss}, s.seqsOf(slices.DeleteFunc(slices.Clone(userEvents), func(n string) bool { return strings.Contains(n, "other issuer") })...)},
		"jti":         {[]string{"--jti", "target-jti"}, s.seqsOf("jti", "jti, other issuer")},
		"sid":         {[]string{"--sid", "sess-9"}, s.seqsOf("sid", "cutoff on sess-9 other")},
		"client":      {[]string{"--client", "web"}, s.seqsOf("sub scoped to web")},
		"many":        {[]string{"--client", "spa"}, spa},
		"claim":       {[]string{"--claim", "tenant=acme"}, s.seqsOf("tenant")},
		"claim sub":   {[]string{"--claim", "sub=user-42x"}, s.seqsOf("sub of another user")},
		"two keys":    {[]string{"--jti", "old-jti", "--sid", "sess-9"}, s.seqsOf("jti of user-42, lapsed", "sid", "cutoff on sess-9 other")},
		"nothing":     {[]string{"--sub", "nobody"}, nil},
	} {
		got := historyLines(t, s, c.args...)
		if fmt.Sprint(seqs(got)) != fmt.Sprint(c.want) {
			t.Errorf("%s: sequences %v, want %v", name, seqs(got), c.want)
		}
		for _, f := range got {
			if f.Event != s.events[f.Seq] {
				t.Errorf("%s: seq %d reported as %+v, stored %+v", name, f.Seq, f.Event, s.events[f.Seq])
			}
		}
	}
	if len(spa) < 1000 {
		t.Fatalf("only %d events on client spa", len(spa))
	}

	// Outcomes: enforced, lapsed, and a claim the sidecars do not allow.
	outcome := func(fs []audit.Finding, seq uint64) audit.Outcome {
		i := slices.IndexFunc(fs, func(f audit.Finding) bool { return f.Seq == seq })
		if i < 0 {
			t.Fatalf("seq %d not listed", seq)
		}
		return fs[i].Outcome
	}
	user := historyLines(t, s, "--sub", "user-42")
	if o := outcome(user, s.planted["jti of user-42, lapsed"]); o != audit.Lapsed {
		t.Errorf("a jti past its exp: %q", o)
	}
	if o := outcome(user, s.planted["sub after iat"]); o != audit.Enforced {
		t.Errorf("a live cutoff: %q", o)
	}
	tenant := historyLines(t, s, "--claim", "tenant=acme")
	if tenant[0].Outcome != audit.NotEnforced || !strings.Contains(tenant[0].Why, `claim "tenant" not allowed`) {
		t.Errorf("tenant without --cutoff-claim: %+v", tenant[0])
	}
	if tenant = historyLines(t, s, "--claim", "tenant=acme", "--cutoff-claim", "tenant"); tenant[0].Outcome != audit.Enforced {
		t.Errorf("tenant with --cutoff-claim: %+v", tenant[0])
	}

	// Text: one line per event, oldest first, then the count.
	r := cli(t, "", "history", "--jti", "target-jti", s.url).want(t, exitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	want := s.seqsOf("jti", "jti, other issuer")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], fmt.Sprintf("seq=%d ", want[0])) || !strings.HasPrefix(lines[1], fmt.Sprintf("seq=%d ", want[1])) ||
		!strings.HasPrefix(lines[2], fmt.Sprintf(`2 events for jti "target-jti" (%d events of stream REVOCATIONS read in `, 5000+len(s.planted))) {
		t.Errorf("text output:\n%s", r.stdout)
	}
	if r := cli(t, "", "history", "--json", "--sub", "nobody", s.url).want(t, exitOK); r.stdout != "" {
		t.Errorf("an empty history printed %q", r.stdout)
	}
}

func TestHistoryRefuses(t *testing.T) {
	for name, c := range map[string]struct {
		args []string
		code int
		msg  string
	}{
		"no key":       {[]string{"history"}, exitUsage, "name what to list"},
		"a argument":   {[]string{"history", "user-42"}, exitUsage, "unexpected argument"},
		"bad --claim":  {[]string{"history", "--claim", "tenant"}, exitUsage, "--claim wants NAME=VALUE"},
		"bad --leeway": {[]string{"history", "--sub", "u", "--leeway", "1h"}, exitUsage, "--leeway must be between"},
		"no NATS":      {[]string{"history", "--sub", "u", "--nats-url", "nats://127.0.0.1:1"}, exitNoStream, "NOT read"},
	} {
		r := cli(t, "", c.args...).want(t, c.code)
		if !strings.Contains(r.stderr, c.msg) {
			t.Errorf("%s: stderr lacks %q:\n%s", name, c.msg, r.stderr)
		}
	}
}
