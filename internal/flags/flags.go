// Package flags holds the command-line flag groups that `revoked` and `revoked ingest`
// share, so that each shared flag is defined once, with one default and one check:
// Events (--stream, --subject-prefix, --cutoff-claim), Keys (the signing keys and the
// token checks), Shutdown (--shutdown-delay, --shutdown-timeout) and Logging
// (--log-level). The NATS connection group is natsconn.Options. Parse adds --version,
// reads a command line and then the environment (every other flag has REVOKED_ and its
// name in upper snake case); Exit turns what Parse or a Validate returned into the exit
// status both subcommands give.
package flags

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/buildinfo"
	"github.com/revoked-dev/revoked/internal/flagenv"
)

// EnvPrefix is the prefix of every environment variable of the revoked binary.
const EnvPrefix = "REVOKED"

// Strings is a repeatable string flag; from the environment it takes a comma-separated list.
type Strings = flagenv.Strings

// Events says where the revocation events are and which cutoffs they may carry.
type Events struct {
	Stream        string  // --stream: the JetStream stream of revocation events
	SubjectPrefix string  // --subject-prefix: subject prefix of the events
	CutoffClaims  Strings // --cutoff-claim: claims a cutoff may name besides sub, sid and client_id
}

// RegisterFlags adds --stream, --subject-prefix and --cutoff-claim to fs.
func (e *Events) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&e.Stream, "stream", event.DefaultStream, "JetStream stream of the revocation events")
	fs.StringVar(&e.SubjectPrefix, "subject-prefix", event.DefaultSubjectPrefix, "subject prefix of revocation events")
	fs.Var(&e.CutoffClaims, "cutoff-claim", "a claim a cutoff event may name besides sub, sid and client_id, which are always allowed (repeatable)")
}

// Keys are the issuer's signing keys and the checks a token's claims must pass.
// RegisterFlags adds what both subcommands verify with; RegisterTokenFlags adds what
// only the sidecar, which verifies every request's token, uses.
type Keys struct {
	JWKSFile       string        // --jwks-file: the issuer's JWKS, reloaded when it changes
	JWKSURL        string        // --jwks-url: the issuer's JWKS, fetched every JWKSRefresh
	Issuers        Strings       // --issuer: accepted iss (repeatable); empty accepts any
	Audiences      Strings       // --audience: accepted aud (repeatable); empty accepts any
	Leeway         time.Duration // --leeway: clock skew allowed on exp, nbf, iat
	JWKSRefresh    time.Duration // --jwks-refresh (sidecar): how often a JWKS URL is fetched again
	HMACSecretFile string        // --hmac-secret-file (sidecar): enables HS256/384/512 with this secret
	MaxTokenLife   time.Duration // --max-token-lifetime (sidecar): longest token lifetime; bounds how long a cutoff is kept
}

// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
const DefaultLeeway = 10 * time.Second

// RegisterFlags adds --jwks-file, --jwks-url, --issuer, --audience and --leeway to fs.
func (k *Keys) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&k.JWKSFile, "jwks-file", "", "file with the issuer's JWKS (reloaded when it changes)")
	fs.StringVar(&k.JWKSURL, "jwks-url", "", "URL of the issuer's JWKS")
	fs.Var(&k.Issuers, "issuer", "accepted iss (repeatable or comma-separated); empty accepts any")
	fs.Var(&k.Audiences, "audience", "accepted aud (repeatable or comma-separated); empty accepts any")
	fs.DurationVar(&k.Leeway, "leeway", DefaultLeeway, "clock skew allowed when checking exp, nbf and iat")
}

// RegisterTokenFlags adds --jwks-refresh, --hmac-secret-file and --max-token-lifetime to fs.
func (k *Keys) RegisterTokenFlags(fs *flag.FlagSet) {
	fs.DurationVar(&k.JWKSRefresh, "jwks-refresh", time.Hour, "how often the JWKS is fetched again (an unknown kid also triggers a rate-limited fetch)")
	fs.StringVar(&k.HMACSecretFile, "hmac-secret-file", "", "shared secret file; enables HS256/HS384/HS512 (off by default)")
	fs.DurationVar(&k.MaxTokenLife, "max-token-lifetime", 24*time.Hour, "longest lifetime of a token; a cutoff is kept this long")
}

// HasJWKS reports whether a JWKS file or URL is set.
func (k *Keys) HasJWKS() bool { return k.JWKSFile != "" || k.JWKSURL != "" }

// Validate checks the settings both subcommands share.
func (k *Keys) Validate() error {
	var errs []error
	if k.JWKSFile != "" && k.JWKSURL != "" {
		errs = append(errs, errors.New("--jwks-file and --jwks-url exclude each other"))
	}
	if k.Leeway < 0 || k.Leeway > 5*time.Minute {
		errs = append(errs, errors.New("--leeway must be between 0 and 5m"))
	}
	return errors.Join(errs...)
}

// Logging is --log-level: JSON logs on stderr at that level.
type Logging struct {
	Level string // --log-level: debug, info, warn or error
}

// RegisterFlags adds --log-level to fs.
func (l *Logging) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&l.Level, "log-level", "info", "debug, info, warn or error")
}

// Validate checks that the level is one slog knows.
func (l *Logging) Validate() error {
	_, err := l.level()
	return err
}

func (l *Logging) level() (slog.Level, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.Level)); err != nil {
		return 0, fmt.Errorf("--log-level must be debug, info, warn or error, not %q", l.Level)
	}
	return lv, nil
}

// Logger returns the JSON logger writing to w at the level (info when it is not
// valid: Validate reports that at startup).
func (l *Logging) Logger(w io.Writer) *slog.Logger {
	lv, err := l.level()
	if err != nil {
		lv = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv}))
}

// Help is what Parse returns for -h or --help: the usage text. It matches flag.ErrHelp.
type Help struct{ Text string }

func (h *Help) Error() string { return "help requested" }

// Is makes errors.Is(err, flag.ErrHelp) hold.
func (h *Help) Is(target error) bool { return target == flag.ErrHelp }

// ErrVersion is what Parse returns for --version, as flag.ErrHelp is for --help: Exit
// prints the build.
var ErrVersion = errors.New("version requested")

// versionFlag is --version. Only the command line asks for it: a REVOKED_VERSION that
// a deployment sets for its own reasons must not keep the process from starting.
const versionFlag = "version"

// Parse adds --version to fs, reads args into fs and then, for every flag args did not
// set, its environment variable. For -h or --help it returns a *Help holding usage
// followed by the flags; for --version, ErrVersion.
func Parse(fs *flag.FlagSet, usage string, args []string) error {
	fs.SetOutput(io.Discard) // Exit prints the errors and the help
	if fs.Lookup(versionFlag) == nil {
		fs.Bool(versionFlag, false, "print the version, VCS revision and Go version, and exit (command line only)")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			var b strings.Builder
			b.WriteString(usage)
			fs.SetOutput(&b)
			fs.PrintDefaults()
			fs.SetOutput(io.Discard)
			return &Help{Text: b.String()}
		}
		return err
	}
	if fs.Lookup(versionFlag).Value.String() == "true" {
		return ErrVersion
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return flagenv.Apply(fs, EnvPrefix, versionFlag)
}

// Exit reports a command-line error of the subcommand name and returns the exit
// status: for a *Help the usage on stdout and 0; for ErrVersion the build on
// stdout and 0; otherwise the error on stderr, a pointer to --help, and 2.
func Exit(name string, err error, stdout, stderr io.Writer) int {
	var help *Help
	if errors.As(err, &help) {
		fmt.Fprint(stdout, help.Text)
		return 0
	}
	if errors.Is(err, ErrVersion) {
		fmt.Fprintln(stdout, buildinfo.Get().Line(name))
		return 0
	}
	fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for the flags.\n", name, err, name)
	return 2
}
