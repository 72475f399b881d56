// Package ingest is the HTTP API, `revoked ingest`, through which identity providers
// that cannot publish to NATS send revocations: contract events (POST /v1/revocations),
// RFC 7009 token revocation (POST /oauth2/revoke) and OpenID Connect Back-Channel Logout
// (POST /backchannel-logout). Every endpoint turns what it receives into contract events,
// publishes them through package publish, and answers only once the stream has
// acknowledged them: a 2xx means the revocation is in the stream; a 503 means it may not
// be, and the caller should retry (a retry within the duplicate window is never doubled).
package ingest

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/flagenv"
	"github.com/revoked-dev/revoked/natsconn"
)

// EnvPrefix is the prefix of the environment variables: REVOKED_ like the sidecar's.
const EnvPrefix = "REVOKED"

// Defaults.
const (
	DefaultListen    = "127.0.0.1:9180"
	DefaultAdminAddr = "127.0.0.1:9181"
	DefaultMaxBody   = 1 << 20
)

// Config is the ingest API's configuration; every field has its flag and the
// environment variable REVOKED_<FLAG>.
type Config struct {
	Listen    string // --listen: the API
	AdminAddr string // --admin-addr: /healthz, /readyz, /metrics

	BearerTokenFile string // --bearer-token-file: callers send "Authorization: Bearer <its content>"
	TLSCert         string // --tls-cert: serve the API over TLS
	TLSKey          string // --tls-key
	ClientCA        string // --client-ca: a client certificate it signs authenticates the caller (mTLS)

	JWKSFile        string          // --jwks-file: keys that sign the tokens revoked and the logout tokens
	JWKSURL         string          // --jwks-url
	Issuers         flagenv.Strings // --issuer: accepted iss (repeatable); empty accepts any
	Audiences       flagenv.Strings // --audience: accepted aud of access tokens at /oauth2/revoke
	LogoutAudiences flagenv.Strings // --logout-audience: client_id(s) a logout token's aud must contain
	OAuthClients    flagenv.Strings // --oauth-client: id:secret-file pairs for client_secret_basic
	Leeway          time.Duration   // --leeway: clock skew allowed on exp, nbf, iat
	LogoutMaxAge    time.Duration   // --logout-max-age: how old a logout token's iat may be

	NATS          natsconn.Options // --nats-*
	Stream        string           // --stream
	SubjectPrefix string           // --subject-prefix
	CutoffClaims  flagenv.Strings  // --cutoff-claim: claims a cutoff event may name
	AckTimeout    time.Duration    // --ack-timeout: one publish attempt's wait for the ack
	Attempts      int              // --attempts: publish attempts before answering 503

	MaxBody  ByteSize // --max-body: largest request body
	LogLevel string   // --log-level
}

// RegisterFlags adds every setting to fs with its default.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", DefaultListen, "`address` of the ingest API")
	fs.StringVar(&c.AdminAddr, "admin-addr", DefaultAdminAddr, "`address` of /healthz, /readyz and /metrics")
	fs.StringVar(&c.BearerTokenFile, "bearer-token-file", "", "`file` holding the bearer token callers must send")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "certificate `file`: serve the API over TLS")
	fs.StringVar(&c.TLSKey, "tls-key", "", "key `file` of --tls-cert")
	fs.StringVar(&c.ClientCA, "client-ca", "", "CA bundle `file`: a client certificate it signs authenticates the caller (mTLS; needs --tls-cert)")
	fs.StringVar(&c.JWKSFile, "jwks-file", "", "`file` with the issuer's JWKS (for /oauth2/revoke and /backchannel-logout)")
	fs.StringVar(&c.JWKSURL, "jwks-url", "", "`URL` of the issuer's JWKS")
	fs.Var(&c.Issuers, "issuer", "accepted iss: `ISSUER` (repeatable); empty accepts any")
	fs.Var(&c.Audiences, "audience", "accepted aud of access tokens at /oauth2/revoke: `AUDIENCE` (repeatable); empty accepts any")
	fs.Var(&c.LogoutAudiences, "logout-audience", "`CLIENT_ID` that a logout token's aud must contain (repeatable); /backchannel-logout needs one")
	fs.Var(&c.OAuthClients, "oauth-client", "`id:secret-file` of a client allowed to call /oauth2/revoke with client_secret_basic (repeatable); none: the bearer token or mTLS")
	fs.DurationVar(&c.Leeway, "leeway", 30*time.Second, "clock skew allowed on exp, nbf and iat")
	fs.DurationVar(&c.LogoutMaxAge, "logout-max-age", 5*time.Minute, "oldest iat accepted on a logout token")
	c.NATS.RegisterFlags(fs)
	fs.StringVar(&c.Stream, "stream", event.DefaultStream, "JetStream `stream` the events go to")
	fs.StringVar(&c.SubjectPrefix, "subject-prefix", event.DefaultSubjectPrefix, "subject `prefix` of the events")
	fs.Var(&c.CutoffClaims, "cutoff-claim", "`CLAIM` a cutoff event may name besides sub, sid and client_id, which are always allowed (repeatable)")
	fs.DurationVar(&c.AckTimeout, "ack-timeout", 2*time.Second, "how long one publish attempt waits for the stream's ack")
	fs.IntVar(&c.Attempts, "attempts", 3, "publish attempts (same Nats-Msg-Id, never doubled) before answering 503")
	c.MaxBody = DefaultMaxBody
	fs.Var(&c.MaxBody, "max-body", "largest request `SIZE`, in bytes or with a KiB/MiB suffix")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
}

// Parse reads args and the environment into a Config and validates it.
func Parse(name string, args []string) (*Config, *flag.FlagSet, error) {
	c := &Config{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // Main prints the errors and the help
	c.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, fs, err
	}
	if fs.NArg() > 0 {
		return nil, fs, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := flagenv.Apply(fs, EnvPrefix); err != nil {
		return nil, fs, err
	}
	return c, fs, c.Validate()
}

// Validate checks the settings once at startup.
func (c *Config) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("--listen is empty"))
	}
	if c.BearerTokenFile == "" && c.ClientCA == "" {
		errs = append(errs, errors.New("no way to authenticate callers: set --bearer-token-file, or --client-ca with --tls-cert (there is no anonymous mode)"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if c.ClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("--client-ca needs --tls-cert and --tls-key"))
	}
	if c.JWKSFile != "" && c.JWKSURL != "" {
		errs = append(errs, errors.New("--jwks-file and --jwks-url exclude each other"))
	}
	if len(c.LogoutAudiences) > 0 && c.JWKSFile == "" && c.JWKSURL == "" {
		errs = append(errs, errors.New("--logout-audience needs --jwks-file or --jwks-url to verify logout tokens"))
	}
	if len(c.OAuthClients) > 0 && c.JWKSFile == "" && c.JWKSURL == "" {
		errs = append(errs, errors.New("--oauth-client needs --jwks-file or --jwks-url to verify the tokens revoked"))
	}
	for _, oc := range c.OAuthClients {
		if id, file, ok := strings.Cut(oc, ":"); !ok || id == "" || file == "" {
			errs = append(errs, fmt.Errorf("--oauth-client %q: want id:secret-file", oc))
		}
	}
	if c.Leeway < 0 || c.Leeway > 5*time.Minute {
		errs = append(errs, errors.New("--leeway must be between 0 and 5m"))
	}
	if c.LogoutMaxAge <= 0 {
		errs = append(errs, errors.New("--logout-max-age must be positive"))
	}
	if c.AckTimeout <= 0 || c.Attempts < 1 {
		errs = append(errs, errors.New("--ack-timeout must be positive and --attempts at least 1"))
	}
	if c.MaxBody < 1024 {
		errs = append(errs, errors.New("--max-body must be at least 1KiB"))
	}
	if err := c.NATS.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// readSecretFile reads a secret (token, client secret) from a file, trimmed.
func readSecretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := strings.TrimSpace(string(b))
	if len(s) < 16 {
		return nil, fmt.Errorf("%s: the secret must be at least 16 characters", path)
	}
	return []byte(s), nil
}

// ByteSize is a size flag: 1048576, 1024KiB, 1MiB (or KB/MB, read as KiB/MiB).
type ByteSize int64

// String implements flag.Value.
func (b *ByteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

// Set implements flag.Value.
func (b *ByteSize) Set(s string) error {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"K", 1 << 10}, {"M", 1 << 20}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return fmt.Errorf("size %q: want bytes, or a number with KiB or MiB", s)
	}
	*b = ByteSize(n * mult)
	return nil
}
