package sidecar

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/flags"
	"github.com/revoked-dev/revoked/natsconn"
	revsync "github.com/revoked-dev/revoked/sync"
)

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

// Settings are the sidecar's settings: every field has its flag and the environment
// variable REVOKED_<FLAG>. The groups shared with `revoked ingest` (NATS, events, keys,
// logging) are defined in package flags and natsconn.
type Settings struct {
	GRPCAddr  string // --grpc-addr: ext_authz v3 and grpc.health.v1; unix:///path for a socket
	HTTPAddr  string // --http-addr: Envoy's HTTP ext_authz mode; empty turns it off
	AdminAddr string // --admin-addr: /healthz, /readyz, /metrics

	NATS         natsconn.Options // --nats-*
	flags.Events                  // --stream, --subject-prefix, --cutoff-claim
	// SnapshotBucket is an Object Store bucket whose snapshot of the stream (written
	// by revokectl snapshot) is loaded before replaying the rest: a fast cold start.
	SnapshotBucket string // --snapshot-bucket
	// SnapshotPublicKey is a file with the Ed25519 public keys (PKIX PEM, or
	// certificates holding them) a snapshot must be signed with; required with
	// SnapshotBucket. A missing or empty file trusts no snapshot: a full replay.
	SnapshotPublicKey string // --snapshot-public-key

	flags.Keys                    // --jwks-*, --hmac-secret-file, --issuer, --audience, --leeway, --max-token-lifetime
	RequireJTI     bool           // --require-jti
	MaxEntries     int            // --max-entries: live blocklist entries kept at most
	SubjectHeader  string         // --subject-header: upstream header with the token's sub
	TokenCacheSize int            // --token-cache-size: verified tokens kept; 0 turns it off
	MaxStaleness   time.Duration  // --max-staleness: 0 never considers the replica stale
	StalePolicy    string         // --stale-policy: serve or deny
	Shutdown       flags.Shutdown // --shutdown-delay, --shutdown-timeout

	Log flags.Logging // --log-level
	Dev bool          // --dev
}

// RegisterFlags adds every setting to fs with its default.
func (c *Settings) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.GRPCAddr, "grpc-addr", DefaultGRPCAddr, "ext_authz v3 gRPC and grpc.health.v1 address; unix:///path for a Unix socket")
	fs.StringVar(&c.HTTPAddr, "http-addr", DefaultHTTPAddr, "Envoy HTTP ext_authz address; empty turns it off")
	fs.StringVar(&c.AdminAddr, "admin-addr", DefaultAdminAddr, "/healthz, /readyz and /metrics address")
	c.NATS.RegisterFlags(fs)
	c.Events.RegisterFlags(fs)
	fs.StringVar(&c.SnapshotBucket, "snapshot-bucket", "", "NATS Object Store bucket holding a snapshot of the stream (revokectl snapshot), loaded before replaying the events after it; empty replays the whole stream")
	fs.StringVar(&c.SnapshotPublicKey, "snapshot-public-key", "", "file with the Ed25519 public key (PKIX PEM, or a certificate holding it; several for a rotation) the snapshot must be signed with; required with --snapshot-bucket. A missing or empty file trusts no snapshot: the whole stream is replayed, with a warning")
	c.Keys.RegisterFlags(fs)
	c.Keys.RegisterTokenFlags(fs)
	fs.BoolVar(&c.RequireJTI, "require-jti", true, "deny tokens without a jti claim (RFC 9068 requires it)")
	fs.IntVar(&c.MaxEntries, "max-entries", revsync.DefaultMaxEntries, "live blocklist entries kept at most (about 65 bytes of memory each); a replica that reaches it stops being ready rather than drop revocations silently")
	fs.StringVar(&c.SubjectHeader, "subject-header", "x-revoked-sub", "header sent upstream with the token's sub on OK; empty sends none")
	fs.IntVar(&c.TokenCacheSize, "token-cache-size", 20_000, "verified tokens remembered (about 0.8 KB plus the token itself each); 0 verifies every request")
	fs.DurationVar(&c.MaxStaleness, "max-staleness", 0, "replica age (time since NATS was last reachable) past which --stale-policy applies; 0 never")
	fs.StringVar(&c.StalePolicy, "stale-policy", StaleServe, "past --max-staleness: serve (answer from the replica) or deny")
	c.Shutdown.RegisterFlags(fs)
	c.Log.RegisterFlags(fs)
	fs.BoolVar(&c.Dev, "dev", false, "single-machine mode: embedded NATS with JetStream, a dev signing key and JWKS, a sample token printed")
}

const usage = `Usage: revoked [flags]
       revoked ingest [flags]   the HTTP ingest API (revoked ingest --help)

Every flag can also be set as REVOKED_<FLAG> (e.g. REVOKED_NATS_URL).

`

// ParseSettings reads args and the environment into Settings and validates them. For
// --help it returns a *flags.Help.
func ParseSettings(args []string) (Settings, error) {
	var c Settings
	fs := flag.NewFlagSet("revoked", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := flags.Parse(fs, usage, args); err != nil {
		return Settings{}, err
	}
	if len(c.CutoffClaims) == 0 {
		c.CutoffClaims = append(flags.Strings(nil), event.DefaultCutoffClaims...)
	}
	return c, c.Validate()
}

// Validate checks the settings once at startup.
func (c *Settings) Validate() error {
	var errs []error
	if c.GRPCAddr == "" {
		errs = append(errs, errors.New("--grpc-addr is empty"))
	}
	if !c.Dev {
		if !c.HasJWKS() && c.HMACSecretFile == "" {
			errs = append(errs, errors.New("set one of --jwks-file or --jwks-url"))
		}
		if err := c.NATS.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.Keys.Validate(); err != nil {
		errs = append(errs, err)
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
	if c.MaxTokenLife <= 0 {
		errs = append(errs, errors.New("--max-token-lifetime must be positive"))
	}
	if c.MaxEntries <= 0 {
		errs = append(errs, errors.New("--max-entries must be positive"))
	}
	if c.TokenCacheSize < 0 {
		errs = append(errs, errors.New("--token-cache-size must not be negative"))
	}
	if c.SubjectHeader != strings.ToLower(c.SubjectHeader) {
		errs = append(errs, fmt.Errorf("header %q must be lower case", c.SubjectHeader))
	}
	if err := c.Shutdown.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Log.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
