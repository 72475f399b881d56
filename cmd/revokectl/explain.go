package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/revoked-dev/revoked/audit"
	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/internal/flagenv"
	"github.com/revoked-dev/revoked/internal/flags"
)

// exitNoStream: explain or history could not read the stream (the same status as check
// failing to reach the sidecar: nothing was decided).
const exitNoStream = exitNoCheck

// policyFlags are the sidecar settings that decide what an event does to a token.
type policyFlags struct {
	claims   flagenv.Strings
	lifetime time.Duration
	leeway   time.Duration
	json     bool
}

func (p *policyFlags) register(fs *flag.FlagSet) {
	fs.Var(&p.claims, "cutoff-claim", "`CLAIM` the sidecars allow a cutoff to name besides sub, sid and client_id, as their --cutoff-claim (repeatable)")
	fs.DurationVar(&p.lifetime, "max-token-lifetime", 24*time.Hour, "the sidecars' --max-token-lifetime (a `DURATION`): a cutoff is kept this long past its not_before")
	fs.DurationVar(&p.leeway, "leeway", flags.DefaultLeeway, "the sidecars' --leeway (a `DURATION`)")
	fs.BoolVar(&p.json, "json", false, "print JSON for scripts, in the form --help describes")
}

// check refuses settings no sidecar accepts.
func (p *policyFlags) check() error {
	if p.lifetime <= 0 {
		return usagef("--max-token-lifetime must be positive")
	}
	if p.leeway < 0 || p.leeway > 5*time.Minute {
		return usagef("--leeway must be between 0 and 5m")
	}
	return nil
}

func (p *policyFlags) policy() audit.Policy {
	return audit.Policy{ExtraClaims: p.claims, Retention: blocklist.Retention{Lifetime: p.lifetime, Leeway: p.leeway}}
}

var explainCmd = &command{
	path:    "explain",
	args:    "TOKEN|- [flags]",
	summary: "say why the stream revokes a token, or does not: its claims and every event that names it",
	help: `
Reads the token's claims WITHOUT verifying its signature (it explains a decision, it
does not authorize anything; the token and its signature are never printed), then reads
the whole revocation stream and lists every event that names the token: jti events for
its (iss, jti), cutoffs on its sub, sid, client_id or azp, or a claim of --cutoff-claim,
as the sidecars match them (an event with iss only for that issuer's tokens, a cutoff with
client_id only for tokens of that client, a cutoff only for tokens issued before its
not_before or without iat). Each is printed with its stream sequence, store time,
reason, source, revoked_by and revoked_at, and what it does: revokes, issued_after (the
token was issued at or after the cutoff), lapsed (sidecars no longer keep it), or
not_enforced (sidecars skip it: invalid, or a claim they were not told to allow). Then
the verdict: "denied: revoked by …" or "not revoked by the stream", and whether the
token has expired.

Give - to read the token from standard input. Give the sidecars' own --cutoff-claim,
--max-token-lifetime and --leeway to be told what they decide.

--json prints one JSON object: {"token": {"header", "claims", "verified": false},
"stream": {…}, "events": [{"seq", "stored", the event's fields, "outcome", "why"}],
"verdict": {"revoked", "expired", "refused", "text", "by": sequences}}.

It checks no signature, issuer or audience; of the sidecars' other checks it reports
only those the claims alone decide: expiry, and a lifetime (exp - iat, or no iat) beyond
--max-token-lifetime, which they refuse.

Exit status: 0 not revoked by the stream, not expired, not refused for its lifetime; 1
revoked, expired or refused; 2 bad command line or not a readable token; 3 the stream
could not be read.

Examples:
  revokectl explain eyJhbGciOiJSUzI1NiIs...
  pbpaste | revokectl explain - --cutoff-claim tenant
  revokectl explain - --json < token.txt | jq '.events[] | select(.outcome == "revokes")'`,
	nats: true,
	setup: func(fs *flag.FlagSet) func(*env, *conn, []string) error {
		var pf policyFlags
		pf.register(fs)
		return func(e *env, c *conn, args []string) error {
			if len(args) != 1 {
				return usagef("want one token (or - for standard input), got %d arguments", len(args))
			}
			if err := pf.check(); err != nil {
				return err
			}
			raw, err := readSecret(e, args[0])
			if err != nil {
				return err
			}
			tok, err := audit.ParseToken(raw)
			if err != nil {
				return usageError{strings.TrimPrefix(err.Error(), "audit: ")}
			}
			nc, js, err := c.connect()
			if err != nil {
				return exitError{exitNoStream, fmt.Sprintf("stream %s NOT read: %v", c.stream, err)}
			}
			defer nc.Close()
			now := time.Now()
			p := pf.policy()
			var found []audit.Finding
			stats, err := audit.Scan(e.ctx, js, audit.ScanOptions{Stream: c.stream, SubjectPrefix: c.subjectPrefix, Needles: tok.Needles(p.ExtraClaims)},
				func(rec *audit.Record) {
					if o := audit.Match(tok, &rec.Event, rec.Stored, now, p); o != audit.NoMatch {
						_, verr := audit.Status(&rec.Event, rec.Stored, now, p)
						found = append(found, audit.NewFinding(rec, o, verr))
					}
				})
			if err != nil {
				return exitError{exitNoStream, fmt.Sprintf("stream %s NOT read: %v", c.stream, err)}
			}
			v := judge(tok, found, now, pf.lifetime)
			if pf.json {
				err = writeExplainJSON(e.stdout, tok, stats, found, v)
			} else {
				writeExplainText(e.stdout, tok, stats, found, v, now)
			}
			if err != nil {
				return err
			}
			if v.Revoked || v.Expired || v.Refused != "" {
				return exitError{code: exitFailed}
			}
			return nil
		}
	},
}

// verdict is explain's conclusion.
type verdict struct {
	Revoked bool     `json:"revoked"`
	Expired bool     `json:"expired"`
	By      []uint64 `json:"by,omitempty"` // sequences of the events that revoke the token
	// Refused says why the sidecars refuse the token whatever the stream holds, when
	// its claims alone decide it (no exp; a lifetime they cannot bound by the window).
	Refused string `json:"refused,omitempty"`
	Text    string `json:"text"`
}

func judge(tok *audit.Token, found []audit.Finding, now time.Time, lifetime time.Duration) verdict {
	var v verdict
	var first *audit.Finding
	for i := range found {
		if found[i].Outcome == audit.Revokes {
			v.By = append(v.By, found[i].Seq)
			if first == nil {
				first = &found[i]
			}
		}
	}
	v.Revoked = first != nil
	if v.Revoked {
		v.Text = "denied: revoked by " + describeEvent(first)
		if n := len(v.By) - 1; n > 0 {
			v.Text += fmt.Sprintf(", and %d more", n)
		}
	} else {
		v.Text = "not revoked by the stream"
	}
	if tok.Exp != 0 && tok.Exp < now.Unix() {
		v.Expired = true
		v.Text += "; expired at " + fmtUnix(tok.Exp)
	}
	// The verifier's rules that the claims alone decide (authz.VerifierConfig
	// MaxLifetime): a token the revocation window cannot cover is refused.
	switch {
	case tok.Exp == 0:
		v.Refused = "it has no exp"
	case tok.Iat == 0:
		v.Refused = "it has no iat, so its lifetime cannot be bounded by --max-token-lifetime"
	case time.Duration(tok.Exp-tok.Iat)*time.Second > lifetime:
		v.Refused = fmt.Sprintf("its lifetime (exp - iat) of %s exceeds --max-token-lifetime %s", time.Duration(tok.Exp-tok.Iat)*time.Second, lifetime)
	}
	if v.Refused != "" {
		v.Text += "; the sidecars refuse it anyway: " + v.Refused
	}
	return v
}

// describeEvent names an event in one phrase: "the jti event at sequence 17 (reason
// compromised, revoked_by admin:7, source revokectl)".
func describeEvent(f *audit.Finding) string {
	what := "the jti event"
	if f.Type == "cutoff" {
		what = fmt.Sprintf("the cutoff on %s", f.Claim)
	}
	var attrs []string
	for _, kv := range [][2]string{{"reason", f.Reason}, {"revoked_by", f.RevokedBy}, {"source", f.Source}} {
		if kv[1] != "" {
			attrs = append(attrs, kv[0]+" "+textValue(kv[1]))
		}
	}
	s := fmt.Sprintf("%s at sequence %d", what, f.Seq)
	if len(attrs) > 0 {
		s += " (" + strings.Join(attrs, ", ") + ")"
	}
	return s
}

func writeExplainText(w io.Writer, tok *audit.Token, stats audit.Stats, found []audit.Finding, v verdict, now time.Time) {
	fmt.Fprintln(w, "Token, read WITHOUT verifying its signature (this explains, it does not authorize):")
	var hdr []string
	for _, h := range []string{"alg", "kid", "typ"} {
		if raw, ok := tok.Header[h]; ok {
			hdr = append(hdr, h+"="+jsonText(raw))
		}
	}
	fmt.Fprintf(w, "  %-10s %s\n", "header", strings.Join(hdr, " "))
	for _, name := range tok.ClaimNames() {
		val := jsonText(tok.Claims[name])
		switch name {
		case "iat", "exp", "nbf", "auth_time":
			val = fmtClaimTime(tok.Claims[name], now)
		}
		fmt.Fprintf(w, "  %-10s %s\n", textValue(name), val)
	}
	if stats.Read == 0 {
		fmt.Fprintf(w, "\nStream %s: empty (%s)\n", stats.Stream, stats.Took.Round(time.Millisecond))
	} else {
		fmt.Fprintf(w, "\nStream %s: %d events read (sequences %d to %d) in %s\n", stats.Stream, stats.Read, stats.First, stats.Last, stats.Took.Round(time.Millisecond))
	}
	var revoking, other []audit.Finding
	for _, f := range found {
		if f.Outcome == audit.Revokes {
			revoking = append(revoking, f)
		} else {
			other = append(other, f)
		}
	}
	fmt.Fprintf(w, "Events that revoke this token: %d\n", len(revoking))
	for i := range revoking {
		fmt.Fprintf(w, "  %s\n", findingLine(&revoking[i]))
	}
	if len(other) > 0 {
		fmt.Fprintf(w, "Events that name this token but do not revoke it: %d\n", len(other))
		for i := range other {
			fmt.Fprintf(w, "  %s\n", findingLine(&other[i]))
		}
	}
	fmt.Fprintf(w, "\nVerdict: %s\n", v.Text)
}

// fmtClaimTime shows a time claim as RFC 3339 with its unix value and, for exp, how far
// it is from now.
func fmtClaimTime(raw json.RawMessage, now time.Time) string {
	var f float64
	if json.Unmarshal(raw, &f) != nil || f <= 0 || f > 1<<40 {
		return jsonText(raw)
	}
	t := time.Unix(int64(f), 0)
	s := fmt.Sprintf("%s (%s)", t.UTC().Format(time.RFC3339), raw)
	if d := t.Sub(now).Round(time.Second); d < 0 {
		s += fmt.Sprintf(", %s ago", -d)
	} else {
		s += fmt.Sprintf(", in %s", d)
	}
	return s
}

// jsonText is a claim's JSON as text output shows it: compact, every unprintable rune
// escaped (JSON lets a token carry C1 controls unescaped).
func jsonText(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return strconv.Quote(string(raw))
	}
	var out strings.Builder
	for _, r := range b.String() {
		if unicode.IsPrint(r) {
			out.WriteRune(r)
		} else {
			fmt.Fprintf(&out, "\\u%04x", r)
		}
	}
	return out.String()
}

// textValue is a value from the stream as text output shows it: as it is, or quoted
// when it holds spaces, quotes, '=' or anything unprintable (a publisher's value must
// not drive the operator's terminal).
func textValue(v string) string {
	if v == "" || strings.ContainsAny(v, " \"=\\") || strings.IndexFunc(v, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(v)
	}
	return v
}

// findingLine is one event on one line, its fields as key=value (values quoted when
// they hold spaces or quotes), for reading and for grep.
func findingLine(f *audit.Finding) string {
	var b strings.Builder
	fmt.Fprintf(&b, "seq=%d stored=%s type=%s", f.Seq, f.Stored.Format(time.RFC3339Nano), f.Type)
	kv := func(k, v string) {
		if v == "" {
			return
		}
		fmt.Fprintf(&b, " %s=%s", k, textValue(v))
	}
	t := func(k string, u int64) {
		if u != 0 {
			kv(k, fmtUnix(u))
		}
	}
	kv("jti", f.JTI)
	t("exp", f.Exp)
	kv("claim", f.Claim)
	kv("value", f.Value)
	t("not_before", f.NotBefore)
	t("enforced_not_before", f.EnforcedNotBefore)
	kv("client_id", f.ClientID)
	kv("iss", f.Iss)
	kv("sub", f.Sub)
	kv("reason", f.Reason)
	kv("source", f.Source)
	kv("revoked_by", f.RevokedBy)
	t("revoked_at", f.RevokedAt)
	kv("event_id", f.EventID)
	kv("outcome", string(f.Outcome))
	kv("why", f.Why)
	return b.String()
}

func writeExplainJSON(w io.Writer, tok *audit.Token, stats audit.Stats, found []audit.Finding, v verdict) error {
	if found == nil {
		found = []audit.Finding{}
	}
	out := struct {
		Token struct {
			Header   map[string]json.RawMessage `json:"header"`
			Claims   map[string]json.RawMessage `json:"claims"`
			Verified bool                       `json:"verified"`
		} `json:"token"`
		Stream  streamJSON      `json:"stream"`
		Events  []audit.Finding `json:"events"`
		Verdict verdict         `json:"verdict"`
	}{Stream: newStreamJSON(stats), Events: found, Verdict: v}
	out.Token.Header, out.Token.Claims = tok.Header, tok.Claims
	return encodeJSON(w, out)
}

// streamJSON is what a scan read, in explain's JSON.
type streamJSON struct {
	Name    string  `json:"name"`
	First   uint64  `json:"first_seq"`
	Last    uint64  `json:"last_seq"`
	Read    int     `json:"read"`
	Seconds float64 `json:"seconds"`
}

func newStreamJSON(s audit.Stats) streamJSON {
	return streamJSON{s.Stream, s.First, s.Last, s.Read, s.Took.Seconds()}
}

func encodeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return errors.New("writing the output: " + err.Error())
	}
	return nil
}
