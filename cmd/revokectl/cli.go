package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/term"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/buildinfo"
	"github.com/revoked-dev/revoked/internal/flagenv"
	"github.com/revoked-dev/revoked/natsconn"
	"github.com/revoked-dev/revoked/publish"
)

// EnvPrefix is the prefix of revokectl's environment variables.
const EnvPrefix = "REVOKECTL"

// Exit statuses.
const (
	exitOK      = 0
	exitFailed  = 1 // not published, not imported in full, or (check) the token denied
	exitUsage   = 2
	exitNoCheck = 3 // check: the sidecar could not be asked
)

// env is what a command reads and writes: the process's, or a test's buffers.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// command is one revokectl subcommand.
type command struct {
	path    string // "revoke jti"
	args    string // "ID --exp TIME"
	summary string // one line, for the command list
	help    string // what it does, then examples
	nats    bool   // takes the connection flags
	setup   func(fs *flag.FlagSet) func(e *env, c *conn, args []string) error
}

// usageError is a wrong command line: exit status 2.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// commands lists the subcommands in the order the help shows them.
var commands = []*command{
	streamInitCmd, streamInfoCmd,
	revokeJTICmd, revokeTokenCmd, revokeSubCmd, revokeSIDCmd, revokeClientCmd,
	importCmd, snapshotKeygenCmd, snapshotVerifyCmd, snapshotCmd, checkCmd,
	explainCmd, historyCmd,
}

const topHelp = `revokectl publishes JWT revocations to the revoked stream (NATS JetStream), manages
that stream, and asks a revoked sidecar about a token as Envoy would.

Usage:
  revokectl <command> [flags] [arguments]
  revokectl --version

Commands:
%s
Every flag can also be set in the environment as REVOKECTL_<FLAG>: --nats-url is
REVOKECTL_NATS_URL, --nats-creds is REVOKECTL_NATS_CREDS. A flag on the command line wins.

Exit status: 0 done; 1 not done (an event not acknowledged by the stream, a line not
imported, a token denied by check, or revoked, expired or refused by explain); 2 bad command line;
3 check could not reach the sidecar, or explain or history could not read the stream.

Run 'revokectl <command> --help' for a command's flags and examples.
`

func printTopHelp(w io.Writer) {
	var b strings.Builder
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-15s %s\n", c.path, c.summary)
	}
	fmt.Fprintf(w, topHelp, b.String())
}

// run is revokectl: it returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		printTopHelp(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && args[0] == "help" {
			return run(ctx, append(args[1:], "--help"), stdin, stdout, stderr)
		}
		printTopHelp(stdout)
		return exitOK
	case "-version", "--version", "version":
		fmt.Fprintln(stdout, buildinfo.Get().Line("revokectl"))
		return exitOK
	}
	cmd, rest := lookup(args)
	if cmd == nil {
		group := args[0]
		var subs []string
		for _, c := range commands {
			if g, sub, ok := strings.Cut(c.path, " "); ok && g == group {
				subs = append(subs, sub)
			}
		}
		if len(subs) > 0 && (len(args) == 1 || strings.HasPrefix(args[1], "-")) {
			fmt.Fprintf(stderr, "revokectl %s: name a subcommand: %s\n", group, strings.Join(subs, ", "))
		} else {
			fmt.Fprintf(stderr, "revokectl: unknown command %q\n", strings.Join(args[:min(len(args), 2)], " "))
		}
		fmt.Fprintln(stderr, "Run 'revokectl --help' for the list of commands.")
		return exitUsage
	}
	return cmd.exec(e, rest)
}

func lookup(args []string) (*command, []string) {
	for _, c := range commands {
		words := strings.Fields(c.path)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.path {
			return c, args[len(words):]
		}
	}
	return nil, nil
}

// exec parses the command's flags (anywhere on the line: revokectl revoke jti ID --exp
// TIME), applies the environment and runs it.
func (c *command) exec(e *env, args []string) int {
	fs := flag.NewFlagSet("revokectl "+c.path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cn *conn
	if c.nats {
		cn = &conn{}
		cn.register(fs)
	}
	body := c.setup(fs)
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		c.printHelp(e.stdout, fs)
		return exitOK
	}
	if err == nil {
		err = flagenv.Apply(fs, EnvPrefix)
	}
	if err == nil {
		err = body(e, cn, pos)
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue) || isFlagError(err):
		fmt.Fprintf(e.stderr, "revokectl %s: %v\nRun 'revokectl %s --help' for usage.\n", c.path, err, c.path)
		return exitUsage
	default:
		var ex exitError
		if errors.As(err, &ex) {
			if ex.msg != "" {
				fmt.Fprintf(e.stderr, "revokectl %s: %s\n", c.path, ex.msg)
			}
			return ex.code
		}
		fmt.Fprintf(e.stderr, "revokectl %s: %v\n", c.path, err)
		return exitFailed
	}
}

// exitError ends a command with a given status.
type exitError struct {
	code int
	msg  string
}

func (x exitError) Error() string { return x.msg }

// flagError marks errors the flag package returned while parsing.
type flagError struct{ error }

func isFlagError(err error) bool {
	var fe flagError
	return errors.As(err, &fe)
}

// parseInterspersed parses flags placed before, between or after the arguments; "--"
// ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, flagError{err}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// connFlagNames are the flags printed under "Connection flags".
var connFlagNames = map[string]bool{
	"nats-url": true, "nats-creds": true, "nats-nkey": true, "nats-user": true, "nats-password": true,
	"nats-token": true, "nats-tls-ca": true, "nats-tls-cert": true, "nats-tls-key": true,
	"stream": true, "subject-prefix": true, "ack-timeout": true, "attempts": true,
}

func (c *command) printHelp(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "%s.\n\nUsage:\n  revokectl %s %s\n", strings.ToUpper(c.summary[:1])+c.summary[1:], c.path, c.args)
	if c.help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.help))
	}
	fmt.Fprintf(w, "\nFlags:\n")
	printFlags(w, fs, func(name string) bool { return !connFlagNames[name] })
	fmt.Fprintf(w, "  %-26s %s\n", "-h, --help", "show this help")
	if c.nats {
		fmt.Fprintf(w, "\nConnection flags:\n")
		printFlags(w, fs, func(name string) bool { return connFlagNames[name] })
	}
	fmt.Fprintf(w, "\nEvery flag is also read from REVOKECTL_<FLAG> (--nats-url: REVOKECTL_NATS_URL).\n")
}

func printFlags(w io.Writer, fs *flag.FlagSet, keep func(string) bool) {
	fs.VisitAll(func(f *flag.Flag) {
		if !keep(f.Name) {
			return
		}
		name, usage := flag.UnquoteUsage(f)
		head := "--" + f.Name
		if name != "" {
			head += " " + name
		}
		fmt.Fprintf(w, "  %-26s %s", head, usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// conn holds the connection flags shared by the commands that talk to NATS: the same as
// the sidecar's, plus the stream and the publisher's patience.
type conn struct {
	nats          natsconn.Options
	stream        string
	subjectPrefix string
	ackTimeout    time.Duration
	attempts      int
}

func (c *conn) register(fs *flag.FlagSet) {
	c.nats.RegisterFlags(fs)
	fs.StringVar(&c.stream, "stream", event.DefaultStream, "`NAME` of the revocation stream")
	fs.StringVar(&c.subjectPrefix, "subject-prefix", event.DefaultSubjectPrefix, "`PREFIX` of the event subjects")
	fs.DurationVar(&c.ackTimeout, "ack-timeout", 2*time.Second, "how long one attempt waits for the stream's ack (a `DURATION`)")
	fs.IntVar(&c.attempts, "attempts", 4, "`N` attempts per event before giving up; a timed-out attempt is retried with the same Nats-Msg-Id, so never doubled")
}

// connect dials NATS once: with no server up it fails at once, loudly, instead of
// waiting for one as the sidecar does.
func (c *conn) connect(opts ...jetstream.JetStreamOpt) (*nats.Conn, jetstream.JetStream, error) {
	c.nats.Name = "revokectl"
	nc, err := c.nats.Connect(slog.New(slog.DiscardHandler), nats.RetryOnFailedConnect(false), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

func (c *conn) publisher(js jetstream.JetStream, allowedClaims []string) *publish.Publisher {
	return publish.New(js, publish.Config{
		SubjectPrefix:  c.subjectPrefix,
		Stream:         c.stream,
		AllowedClaims:  allowedClaims,
		AttemptTimeout: c.ackTimeout,
		Attempts:       c.attempts,
	})
}

// parseTime reads a time given as RFC 3339, unix seconds, "now", or +DURATION / -DURATION
// from now.
func parseTime(s string, now time.Time) (int64, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return 0, errors.New("empty time")
	case s == "now":
		return now.Unix(), nil
	case s[0] == '+' || s[0] == '-':
		d, err := time.ParseDuration(s[1:])
		if err != nil {
			return 0, fmt.Errorf("time %q: %w", s, err)
		}
		if s[0] == '-' {
			d = -d
		}
		return now.Add(d).Unix(), nil
	}
	var n int64
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && fmt.Sprint(n) == s {
		return n, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return 0, fmt.Errorf("time %q: want RFC 3339 (2026-01-01T00:00:00Z), unix seconds, now, or +DURATION", s)
	}
	return t.Unix(), nil
}

// readSecret returns arg, or standard input when arg is "-": a token kept out of the
// shell history and the process list.
func readSecret(e *env, arg string) (string, error) {
	if arg != "-" {
		return arg, nil
	}
	b, err := io.ReadAll(io.LimitReader(e.stdin, 1<<20))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func isTerminal(w io.Writer) (*os.File, bool) {
	f, ok := w.(*os.File)
	if !ok {
		return nil, false
	}
	return f, term.IsTerminal(int(f.Fd()))
}

func fmtUnix(u int64) string { return time.Unix(u, 0).UTC().Format(time.RFC3339) }
