// Package config holds the sidecar's settings: one struct, every field with its flag,
// default and environment variable (REVOKED_ and the flag in upper snake case).
package config

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/flagenv"
	"github.com/revoked-dev/revoked/natsconn"
	revsync "github.com/revoked-dev/revoked/sync"
)

// EnvPrefix is the prefix of every environment variable of the sidecar.
const EnvPrefix = "REVOKED"

// Default listen addresses (CONTRACT section 3). Loopback: Envoy runs in the same pod.
const (
	DefaultGRPCAddr  = "127.0.0.1:9191"
	DefaultHTTPAddr  = "127.0.0.1:9192"
	DefaultAdminAddr = "127.0.0.1:9193"
)

// Stale policies: what the sidecar does once its replica is older than MaxStaleness.
const (
	StaleServe = "serve" // keep answering from the replica
	StaleDeny  = "deny"  // deny every request until NATS is back
)

// Sidecar is the configuration of the revoked sidecar.
type Sidecar struct {
	GRPCAddr  string // --grpc-addr: ext_authz v3 and grpc.health.v1; unix:///path for a socket
	HTTPAddr  string // --http-addr: Envoy's HTTP ext_authz mode; empty turns it off
	AdminAddr string // --admin-addr: /healthz, /readyz, /metrics

	NATS          natsconn.Options // --nats-*
	Stream        string           // --stream
	SubjectPrefix string           // --subject-prefix
	// SnapshotBucket is an Object Store bucket whose snapshot of the stream (written
	// by revokectl snapshot) is loaded before replaying the rest: a fast cold start.
	SnapshotBucket string // --snapshot-bucket
	// SnapshotPublicKey is a file with the Ed25519 public keys (PKIX PEM) a snapshot
	// must be signed with; required with SnapshotBucket.
	SnapshotPublicKey string // --snapshot-public-key

	JWKSFile        string        // --jwks-file
	JWKSURL         string        // --jwks-url
	JWKSRefresh     time.Duration // --jwks-refresh: how often a JWKS URL is fetched again
	HMACSecretFile  string        // --hmac-secret-file: enables HS256/384/512 with this secret
	Issuers         flagenv.Strings
	Audiences       flagenv.Strings
	Leeway          time.Duration // --leeway: clock skew allowed on exp, nbf, iat
	RequireJTI      bool          // --require-jti
	CutoffClaims    flagenv.Strings
	MaxTokenLife    time.Duration // --max-token-lifetime: bounds how long a cutoff is kept
	MaxEntries      int           // --max-entries: live blocklist entries kept at most
	SubjectHeader   string        // --subject-header: upstream header with the token's sub
	TokenCacheSize  int           // --token-cache-size: verified tokens kept; 0 turns it off
	MaxStaleness    time.Duration // --max-staleness: 0 never considers the replica stale
	StalePolicy     string        // --stale-policy: serve or deny
	ShutdownTimeout time.Duration // --shutdown-timeout: time given to in-flight checks

	LogLevel string // --log-level
	Dev      bool   // --dev
}

// RegisterFlags adds every setting to fs with its default.
func (c *Sidecar) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.GRPCAddr, "grpc-addr", DefaultGRPCAddr, "ext_authz v3 gRPC and grpc.health.v1 address; unix:///path for a Unix socket")
	fs.StringVar(&c.HTTPAddr, "http-addr", DefaultHTTPAddr, "Envoy HTTP ext_authz address; empty turns it off")
	fs.StringVar(&c.AdminAddr, "admin-addr", DefaultAdminAddr, "/healthz, /readyz and /metrics address")
	c.NATS.RegisterFlags(fs)
	fs.StringVar(&c.Stream, "stream", event.DefaultStream, "JetStream stream to replay and follow")
	fs.StringVar(&c.SubjectPrefix, "subject-prefix", event.DefaultSubjectPrefix, "subject prefix of revocation events")
	fs.StringVar(&c.SnapshotBucket, "snapshot-bucket", "", "NATS Object Store bucket holding a snapshot of the stream (revokectl snapshot), loaded before replaying the events after it; empty replays the whole stream")
	fs.StringVar(&c.SnapshotPublicKey, "snapshot-public-key", "", "file with the Ed25519 public key (PKIX PEM; several for a rotation) the snapshot must be signed with; required with --snapshot-bucket")
	fs.StringVar(&c.JWKSFile, "jwks-file", "", "file with the issuer's JWKS (reloaded when it changes)")
	fs.StringVar(&c.JWKSURL, "jwks-url", "", "URL of the issuer's JWKS")
	fs.DurationVar(&c.JWKSRefresh, "jwks-refresh", time.Hour, "how often the JWKS is fetched again (an unknown kid also triggers a rate-limited fetch)")
	fs.StringVar(&c.HMACSecretFile, "hmac-secret-file", "", "shared secret file; enables HS256/HS384/HS512 (off by default)")
	fs.Var(&c.Issuers, "issuer", "accepted iss (repeatable or comma-separated); empty accepts any")
	fs.Var(&c.Audiences, "audience", "accepted aud (repeatable or comma-separated); empty accepts any")
	fs.DurationVar(&c.Leeway, "leeway", 10*time.Second, "clock skew allowed when checking exp, nbf and iat")
	fs.BoolVar(&c.RequireJTI, "require-jti", true, "deny tokens without a jti claim (RFC 9068 requires it)")
	fs.Var(&c.CutoffClaims, "cutoff-claim", "a claim a cutoff event may name besides sub, sid and client_id, which are always allowed (repeatable)")
	fs.DurationVar(&c.MaxTokenLife, "max-token-lifetime", 24*time.Hour, "longest lifetime of a token; a cutoff is kept this long")
	fs.IntVar(&c.MaxEntries, "max-entries", revsync.DefaultMaxEntries, "live blocklist entries kept at most (about 65 bytes of memory each); a replica that reaches it stops being ready rather than drop revocations silently")
	fs.StringVar(&c.SubjectHeader, "subject-header", "x-revoked-sub", "header sent upstream with the token's sub on OK; empty sends none")
	fs.IntVar(&c.TokenCacheSize, "token-cache-size", 20_000, "verified tokens remembered (about 1.3 KB plus the token itself each); 0 verifies every request")
	fs.DurationVar(&c.MaxStaleness, "max-staleness", 0, "replica age (time since NATS was last reachable) past which --stale-policy applies; 0 never")
	fs.StringVar(&c.StalePolicy, "stale-policy", StaleServe, "past --max-staleness: serve (answer from the replica) or deny")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "on SIGTERM, time given to in-flight checks")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&c.Dev, "dev", false, "single-machine mode: embedded NATS with JetStream, a dev signing key and JWKS, a sample token printed")
}

// Parse reads args and the environment into a Sidecar and validates it.
func Parse(name string, args []string) (*Sidecar, error) {
	c := &Sidecar{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	c.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [flags]\n\nEvery flag can also be set as %s_<FLAG> (e.g. REVOKED_NATS_URL).\n\n", name, EnvPrefix)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := flagenv.Apply(fs, EnvPrefix); err != nil {
		return nil, err
	}
	if len(c.CutoffClaims) == 0 {
		c.CutoffClaims = append(flagenv.Strings(nil), event.DefaultCutoffClaims...)
	}
	return c, c.Validate()
}

// Validate checks the settings once at startup.
func (c *Sidecar) Validate() error {
	var errs []error
	if c.GRPCAddr == "" {
		errs = append(errs, errors.New("--grpc-addr is empty"))
	}
	if !c.Dev {
		if (c.JWKSFile == "") == (c.JWKSURL == "") && c.HMACSecretFile == "" {
			errs = append(errs, errors.New("set one of --jwks-file or --jwks-url"))
		}
		if err := c.NATS.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.JWKSFile != "" && c.JWKSURL != "" {
		errs = append(errs, errors.New("--jwks-file and --jwks-url exclude each other"))
	}
	if c.SnapshotBucket != "" && c.SnapshotPublicKey == "" {
		errs = append(errs, errors.New("--snapshot-bucket needs --snapshot-public-key: without the snapshot job's public key the sidecar would trust any snapshot written to the bucket, and anyone who can write there could make it skip every revocation"))
	}
	if c.SnapshotPublicKey != "" && c.SnapshotBucket == "" {
		errs = append(errs, errors.New("--snapshot-public-key without --snapshot-bucket: no snapshot would be loaded"))
	}
	if c.StalePolicy != StaleServe && c.StalePolicy != StaleDeny {
		errs = append(errs, fmt.Errorf("--stale-policy must be serve or deny, not %q", c.StalePolicy))
	}
	if c.Leeway < 0 || c.Leeway > 5*time.Minute {
		errs = append(errs, errors.New("--leeway must be between 0 and 5m"))
	}
	if c.MaxTokenLife <= 0 {
		errs = append(errs, errors.New("--max-token-lifetime must be positive"))
	}
	if c.MaxEntries <= 0 {
		errs = append(errs, errors.New("--max-entries must be positive"))
	}
	if c.TokenCacheSize < 0 {
		errs = append(errs, errors.New("--token-cache-size must not be negative"))
	}
	for _, h := range []string{c.SubjectHeader} {
		if h != strings.ToLower(h) {
			errs = append(errs, fmt.Errorf("header %q must be lower case", h))
		}
	}
	return errors.Join(errs...)
}
