package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/revoked-dev/revoked/event"
)

// revokeFlags are the flags every revoke command takes.
type revokeFlags struct {
	iss, reason, by, eventID string
}

func (r *revokeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.iss, "iss", "", "apply only to tokens whose iss is `ISSUER` (default: any issuer)")
	fs.StringVar(&r.reason, "reason", "admin_revoke", "why: `REASON`, one of "+strings.Join(event.Reasons, ", "))
	fs.StringVar(&r.by, "by", "revokectl", "`WHO` revokes, kept in the event's revoked_by for audit")
	fs.StringVar(&r.eventID, "event-id", "", "event_id, sent as Nats-Msg-Id: an `ID` published twice within the duplicate window is stored once (default: derived from the event's content)")
}

func (r *revokeFlags) fill(ev *event.Event, now time.Time) error {
	if !slices.Contains(event.Reasons, r.reason) {
		return usagef("--reason must be one of %s", strings.Join(event.Reasons, ", "))
	}
	if ev.Iss == "" {
		ev.Iss = r.iss
	}
	ev.Reason, ev.RevokedBy, ev.EventID = r.reason, r.by, r.eventID
	ev.RevokedAt = now.Unix()
	ev.Source = source
	return nil
}

// source is the source (CONTRACT section 2) of every event revokectl publishes, the
// imported ones that name none included.
const source = "revokectl"

// publishOne publishes ev and prints its sequence.
func publishOne(e *env, c *conn, ev event.Event, what string) error {
	nc, js, err := c.connect()
	if err != nil {
		return fmt.Errorf("%s NOT revoked: %w", what, err)
	}
	defer nc.Close()
	r, err := c.publisher(js, []string{ev.Claim}).Publish(e.ctx, ev)
	var evErr *event.Error
	if errors.As(err, &evErr) {
		return usageError{err.Error()}
	}
	if err != nil {
		return fmt.Errorf("%s NOT revoked: %w", what, err)
	}
	if r.Duplicate {
		fmt.Fprintf(e.stdout, "%s already revoked by this event: stream %s, sequence %d (duplicate, not stored again)\n", what, r.Stream, r.Sequence)
		return nil
	}
	fmt.Fprintf(e.stdout, "%s revoked: stream %s, sequence %d\n", what, r.Stream, r.Sequence)
	return nil
}

var revokeJTICmd = &command{
	path:    "revoke jti",
	args:    "ID --exp TIME [flags]",
	summary: "revoke one token by its jti",
	help: `
Publishes a jti event: every sidecar denies the token whose jti claim is ID. --exp is
the token's own exp, after which the entry is dropped. TIME is RFC 3339, unix seconds,
or +DURATION from now. Prints the stream sequence of the event.

Examples:
  revokectl revoke jti 7f3c9a1e --exp 2026-01-01T00:00:00Z --reason compromised
  revokectl revoke jti 7f3c9a1e --exp 1767225600 --iss https://idp.example.com`,
	nats: true,
	setup: func(fs *flag.FlagSet) func(*env, *conn, []string) error {
		var rf revokeFlags
		rf.register(fs)
		exp := fs.String("exp", "", "the token's exp claim, a `TIME` (required)")
		sub := fs.String("sub", "", "the token's `SUB`, kept for audit")
		return func(e *env, c *conn, args []string) error {
			if len(args) != 1 {
				return usagef("want one jti, got %d arguments", len(args))
			}
			if *exp == "" {
				return usagef("--exp is required: the token's exp, after which the entry may be dropped")
			}
			now := time.Now()
			x, err := parseTime(*exp, now)
			if err != nil {
				return usagef("--exp: %v", err)
			}
			ev := event.Event{Type: event.TypeJTI, JTI: args[0], Exp: x, Sub: *sub}
			if err := rf.fill(&ev, now); err != nil {
				return err
			}
			return publishOne(e, c, ev, fmt.Sprintf("jti %q (exp %s)", ev.JTI, fmtUnix(x)))
		}
	},
}

var revokeTokenCmd = &command{
	path:    "revoke token",
	args:    "JWT|- [flags]",
	summary: "revoke a token given whole: its jti, exp, iss and sub are read from it",
	help: `
Reads the token's claims (the signature is not checked: revoking a token never grants
anything) and publishes a jti event for it. Give - to read the token from standard
input, which keeps it out of the shell history. The token itself is never printed.

Examples:
  revokectl revoke token eyJhbGciOiJSUzI1NiIs... --reason logout
  pbpaste | revokectl revoke token - --reason compromised`,
	nats: true,
	setup: func(fs *flag.FlagSet) func(*env, *conn, []string) error {
		var rf revokeFlags
		rf.register(fs)
		return func(e *env, c *conn, args []string) error {
			if len(args) != 1 {
				return usagef("want one token (or - for standard input), got %d arguments", len(args))
			}
			raw, err := readSecret(e, args[0])
			if err != nil {
				return err
			}
			ev, err := tokenEvent(raw)
			if err != nil {
				return usageError{err.Error()}
			}
			if rf.iss != "" && ev.Iss != "" && rf.iss != ev.Iss {
				return usagef("--iss %q differs from the token's iss %q", rf.iss, ev.Iss)
			}
			now := time.Now()
			if err := rf.fill(&ev, now); err != nil {
				return err
			}
			if ev.Exp <= now.Unix() {
				fmt.Fprintf(e.stderr, "note: the token expired at %s; sidecars already refuse it\n", fmtUnix(ev.Exp))
			}
			return publishOne(e, c, ev, fmt.Sprintf("token jti %q (iss %q, sub %q, exp %s)", ev.JTI, ev.Iss, ev.Sub, fmtUnix(ev.Exp)))
		}
	},
}

// tokenEvent reads the jti event of a JWT from its claims, unverified.
func tokenEvent(raw string) (event.Event, error) {
	raw = strings.TrimPrefix(strings.TrimSpace(raw), "Bearer ")
	var claims jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &claims); err != nil {
		return event.Event{}, fmt.Errorf("not a JWT: %w", err)
	}
	ev := event.Event{Type: event.TypeJTI}
	ev.JTI, _ = claims["jti"].(string)
	if ev.JTI == "" {
		return ev, errors.New("the token has no jti claim: revoke its session or subject instead (revokectl revoke sid|sub)")
	}
	exp, ok := claims["exp"].(float64)
	if !ok || exp <= 0 || exp > math.MaxUint32 {
		return ev, errors.New("the token has no usable exp claim: use revokectl revoke jti ID --exp TIME")
	}
	ev.Exp = int64(exp)
	ev.Iss, _ = claims["iss"].(string)
	ev.Sub, _ = claims["sub"].(string)
	return ev, nil
}

func cutoffCmd(kind, claim, what, example string) *command {
	return &command{
		path:    "revoke " + kind,
		args:    "VALUE [--not-before TIME] [flags]",
		summary: "revoke every token of " + what + " issued before a time",
		help: fmt.Sprintf(`
Publishes a cutoff event on the %s claim: every sidecar denies the tokens whose %s is
VALUE and whose iat is before --not-before (tokens without iat too). Tokens issued later
are allowed again. TIME is RFC 3339, unix seconds, now, or +/-DURATION from now; the
default is now, rounded up to the next second so that a token issued in this very
second is revoked as well.%s

Examples:
  revokectl revoke %s %s --reason %s
  revokectl revoke %s %s --not-before 2026-01-01T12:00:00Z --iss https://idp.example.com`,
			claim, claim, clientHelp(kind, claim, example), kind, example, map[string]string{"sub": "password_change", "sid": "logout", "client": "compromised"}[kind], kind, example),
		nats: true,
		setup: func(fs *flag.FlagSet) func(*env, *conn, []string) error {
			var rf revokeFlags
			rf.register(fs)
			nb := fs.String("not-before", "", "revoke tokens issued before `TIME` (default now)")
			clientID := new(string)
			if claim != "client_id" { // a client's own tokens are revoke client's job
				fs.StringVar(clientID, "client-id", "", "revoke only the tokens of the OAuth client `ID` (their client_id or azp); default every client's")
			}
			return func(e *env, c *conn, args []string) error {
				if len(args) != 1 {
					return usagef("want one %s value, got %d arguments", claim, len(args))
				}
				now := time.Now()
				notBefore := now.Unix() + 1
				if *nb != "" {
					var err error
					if notBefore, err = parseTime(*nb, now); err != nil {
						return usagef("--not-before: %v", err)
					}
				}
				ev := event.Event{Type: event.TypeCutoff, Claim: claim, Value: args[0], NotBefore: notBefore, ClientID: *clientID}
				if claim == "sub" {
					ev.Sub = args[0]
				}
				if err := rf.fill(&ev, now); err != nil {
					return err
				}
				what := fmt.Sprintf("tokens with %s %q issued before %s", claim, ev.Value, fmtUnix(notBefore))
				if ev.ClientID != "" {
					what = fmt.Sprintf("tokens of client %q with %s %q issued before %s", ev.ClientID, claim, ev.Value, fmtUnix(notBefore))
				}
				return publishOne(e, c, ev, what)
			}
		},
	}
}

// clientHelp is the help text of --client-id, which every cutoff command but revoke
// client takes.
func clientHelp(kind, claim, example string) string {
	if claim == "client_id" {
		return ""
	}
	return fmt.Sprintf(`

--client-id ID restricts the cutoff to the tokens of one OAuth client (their client_id
or azp is ID): the tokens of other clients stay valid, as after a logout at one
application whose access tokens carry no sid. Example:
  revokectl revoke %s %s --client-id billing-app --reason logout`, kind, example)
}

var (
	revokeSubCmd    = cutoffCmd("sub", "sub", "a subject (user)", "user-42")
	revokeSIDCmd    = cutoffCmd("sid", "sid", "a session", "08a5019c-17e1-4977-8f42-65a12843ea02")
	revokeClientCmd = cutoffCmd("client", "client_id", "an OAuth client (client_id or azp)", "billing-app")
)
