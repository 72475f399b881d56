package main

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/revoked-dev/revoked/audit"
)

var historyCmd = &command{
	path:    "history",
	args:    "--sub X | --sid X | --client X | --jti X | --claim NAME=VALUE | --iss X [flags]",
	summary: "list what the stream revoked for a user, session, client, token or issuer, oldest first",
	help: `
Reads the whole revocation stream and lists, oldest first, every event about the key:
--jti X the jti events for that token id; --sub X the cutoffs on that user and the jti
events whose sub (kept for audit) is X; --sid X the cutoffs on that session; --client X
the cutoffs on that client_id (or azp) and those scoped to that client; --claim
NAME=VALUE the cutoffs on an operator's claim. Several keys list the events of any of
them. --iss X keeps that issuer's events and those naming no issuer (they apply to
every issuer); alone, it lists every event that can apply to that issuer's tokens.

Each event is printed with its stream sequence, store time and fields (reason, source,
revoked_by, revoked_at…), and its outcome at the sidecars: enforced, lapsed (no longer
kept: a jti past its exp, a cutoff past not_before plus --max-token-lifetime), or
not_enforced (skipped: invalid, or a claim not in --cutoff-claim) with why.

--json prints one JSON object per line (JSON Lines), one per event, oldest first:
{"seq", "stored", the event's fields, "outcome", "why"}; nothing else, so an empty
history prints nothing. The text form ends with a count.

Exit status: 0 listed (an empty history too); 2 bad command line; 3 the stream could
not be read.

Examples:
  revokectl history --sub user-42
  revokectl history --client billing-app --iss https://idp.example.com
  revokectl history --jti 7f3c9a1e --json | jq -r .reason`,
	nats: true,
	setup: func(fs *flag.FlagSet) func(*env, *conn, []string) error {
		var pf policyFlags
		pf.register(fs)
		var k audit.Key
		fs.StringVar(&k.Sub, "sub", "", "list the revocations of the user `SUB`")
		fs.StringVar(&k.Sid, "sid", "", "list the revocations of the session `SID`")
		fs.StringVar(&k.Client, "client", "", "list the revocations of the OAuth client `CLIENT_ID`")
		fs.StringVar(&k.JTI, "jti", "", "list the revocations of the token id `JTI`")
		fs.StringVar(&k.Iss, "iss", "", "only events of the issuer `ISSUER` (and those naming none)")
		claim := fs.String("claim", "", "list the cutoffs on an operator's claim: `NAME=VALUE`")
		return func(e *env, c *conn, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected argument %q: name the key with a flag (--sub %s)", args[0], args[0])
			}
			if *claim != "" {
				name, value, ok := strings.Cut(*claim, "=")
				if !ok || name == "" || value == "" {
					return usagef("--claim wants NAME=VALUE, got %q", *claim)
				}
				switch name {
				case "sub":
					k.Sub = value
				case "sid":
					k.Sid = value
				case "client_id", "azp":
					k.Client = value
				default:
					k.Claim, k.Value = name, value
				}
			}
			if k.IsZero() {
				return usagef("name what to list: --sub, --sid, --client, --jti, --claim or --iss")
			}
			if err := pf.check(); err != nil {
				return err
			}
			nc, js, err := c.connect()
			if err != nil {
				return exitError{exitNoStream, fmt.Sprintf("stream %s NOT read: %v", c.stream, err)}
			}
			defer nc.Close()
			now := time.Now()
			p := pf.policy()
			n := 0
			var werr error
			stats, err := audit.Scan(e.ctx, js, audit.ScanOptions{Stream: c.stream, SubjectPrefix: c.subjectPrefix, Needles: k.Needles()},
				func(rec *audit.Record) {
					if werr != nil || !k.Matches(&rec.Event) {
						return
					}
					o, verr := audit.Status(&rec.Event, rec.Stored, now, p)
					f := audit.NewFinding(rec, o, verr)
					n++
					if pf.json {
						werr = encodeJSON(e.stdout, f)
					} else {
						_, werr = fmt.Fprintln(e.stdout, findingLine(&f))
					}
				})
			if err != nil {
				return exitError{exitNoStream, fmt.Sprintf("stream %s NOT read: %v", c.stream, err)}
			}
			if werr != nil {
				return werr
			}
			if !pf.json {
				noun := "events"
				if n == 1 {
					noun = "event"
				}
				fmt.Fprintf(e.stdout, "%d %s for %s (%d events of stream %s read in %s)\n", n, noun, describeKey(k), stats.Read, stats.Stream, stats.Took.Round(time.Millisecond))
			}
			return nil
		}
	},
}

// describeKey names a history's key for its closing line: sub "user-42", iss "…".
func describeKey(k audit.Key) string {
	var parts []string
	for _, kv := range [][2]string{{"jti", k.JTI}, {"sub", k.Sub}, {"sid", k.Sid}, {"client", k.Client}} {
		if kv[1] != "" {
			parts = append(parts, fmt.Sprintf("%s %q", kv[0], kv[1]))
		}
	}
	if k.Claim != "" {
		parts = append(parts, fmt.Sprintf("%s %q", k.Claim, k.Value))
	}
	s := strings.Join(parts, " or ")
	if k.Iss != "" {
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("iss %q", k.Iss)
	}
	return s
}
