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
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/revoked-dev/revoked/internal/flags"
	"github.com/revoked-dev/revoked/natsconn"
)

// Defaults of the settings `revoked ingest` gives flags for.
const (
	DefaultListen    = "127.0.0.1:9180"
	DefaultAdminAddr = "127.0.0.1:9181"
	DefaultMaxBody   = 1 << 20
	// DefaultLogoutMaxAge is the default acceptance window of a logout token's iat: with
	// twice the default leeway it fits MinDuplicateWindow.
	DefaultLogoutMaxAge = 90 * time.Second
	// MinDuplicateWindow is the shortest duplicate window the contract lets a stream
	// have (CONTRACT section 2); the logout acceptance window must fit it.
	MinDuplicateWindow = 2 * time.Minute
)

// Config is the ingest API's configuration. The `revoked ingest` command
// (internal/ingestd) fills it from flags: each field names its flag.
type Config struct {
	Listen    string // --listen: the API
	AdminAddr string // --admin-addr: /healthz, /readyz, /metrics

	// BearerTokenFile (--bearer-token-file): callers send "Authorization: Bearer <its
	// content>". Without it and ClientCA, /v1/revocations is off (see checkEndpoints).
	BearerTokenFile string
	TLSCert         string // --tls-cert: serve the API over TLS
	TLSKey          string // --tls-key
	ClientCA        string // --client-ca: a client certificate it signs authenticates the caller (mTLS)
	// ClientCertNames (--client-cert-name) limit mTLS callers to certificates naming one
	// of them (subject CN, or a DNS, URI or email SAN); empty accepts any the CA signs.
	ClientCertNames flags.Strings

	// The keys and claims that verify the tokens revoked at /oauth2/revoke and the
	// logout tokens. (`revoked ingest` shares these flags with the sidecar: ingestd
	// copies them here.)
	JWKSFile  string        // --jwks-file: the issuer's JWKS, reloaded when it changes
	JWKSURL   string        // --jwks-url: the issuer's JWKS, fetched again for an unknown kid
	Issuers   []string      // --issuer: accepted iss; empty accepts any
	Audiences []string      // --audience: accepted aud of the tokens revoked; empty accepts any
	Leeway    time.Duration // --leeway: clock skew allowed on exp, nbf and iat

	LogoutAudiences flags.Strings // --logout-audience: client_id(s) a logout token's aud must contain
	OAuthClients    flags.Strings // --oauth-client: id:secret-file pairs for client_secret_basic
	// OAuthPrivileged (--oauth-privileged-client) are the --oauth-client ids that may revoke
	// any client's tokens; the others revoke only tokens issued to them (client_id or azp).
	OAuthPrivileged flags.Strings
	LogoutMaxAge    time.Duration // --logout-max-age: how old a logout token's iat may be
	// LogoutCutoffs (--logout-cutoff, [ISSUER=]MODE, repeatable) say what a logout
	// revokes, for every issuer or one: see LogoutMode. Default: sid.
	LogoutCutoffs flags.Strings
	// LogoutNoExp (--logout-allow-missing-exp) are the issuers whose logout tokens may
	// lack exp (Ory Hydra's do, against BCL 1.0); the iat window bounds them instead.
	LogoutNoExp flags.Strings

	NATS         natsconn.Options // --nats-*
	flags.Events                  // --stream, --subject-prefix, --cutoff-claim
	AckTimeout   time.Duration    // --ack-timeout: one publish attempt's wait for the ack
	Attempts     int              // --attempts: publish attempts before answering 503

	MaxBody ByteSize // --max-body: largest request body

	// SSFTransmitters (--ssf-transmitters) is the YAML file of the Shared Signals
	// transmitters whose SETs POST /ssf/events takes (package ssf); empty: off. A jwt_id
	// subject's entry gets exp = now + MaxTokenLife (--max-token-lifetime).
	SSFTransmitters string
	MaxTokenLife    time.Duration
}

// HasJWKS reports whether a JWKS file or URL is set: the tokens revoked at
// /oauth2/revoke and the logout tokens can be verified.
func (c *Config) HasJWKS() bool { return c.JWKSFile != "" || c.JWKSURL != "" }

// Validate checks the settings once at startup.
func (c *Config) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("--listen is empty"))
	}
	if err := c.checkEndpoints(); err != nil {
		errs = append(errs, err)
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
	if c.Leeway < 0 || c.Leeway > 5*time.Minute {
		errs = append(errs, errors.New("--leeway must be between 0 and 5m"))
	}
	if len(c.LogoutAudiences) > 0 && !c.HasJWKS() {
		errs = append(errs, errors.New("--logout-audience needs --jwks-file or --jwks-url to verify logout tokens"))
	}
	if len(c.OAuthClients) > 0 && !c.HasJWKS() {
		errs = append(errs, errors.New("--oauth-client needs --jwks-file or --jwks-url to verify the tokens revoked"))
	}
	for _, oc := range c.OAuthClients {
		if id, file, ok := strings.Cut(oc, ":"); !ok || id == "" || file == "" {
			errs = append(errs, fmt.Errorf("--oauth-client %q: want id:secret-file", oc))
		}
	}
	if c.LogoutMaxAge <= 0 {
		errs = append(errs, errors.New("--logout-max-age must be positive"))
	} else if w := c.LogoutMaxAge + 2*c.Leeway; w > MinDuplicateWindow {
		// A logout token replayed to another replica is caught only by the stream's
		// duplicate window (at least 2 min, CONTRACT section 2); a longer acceptance
		// window would let a replay through once the window has passed.
		errs = append(errs, fmt.Errorf("--logout-max-age + 2 × --leeway is %s: it must fit the stream's duplicate window (%s), which refuses a replayed logout token across replicas", w, MinDuplicateWindow))
	}
	if _, err := c.logoutPolicy(); err != nil {
		errs = append(errs, err)
	}
	for _, id := range c.OAuthPrivileged {
		if !slices.ContainsFunc(c.OAuthClients, func(oc string) bool { return strings.HasPrefix(oc, id+":") }) {
			errs = append(errs, fmt.Errorf("--oauth-privileged-client %q is not an --oauth-client", id))
		}
	}
	if len(c.ClientCertNames) > 0 && c.ClientCA == "" {
		errs = append(errs, errors.New("--client-cert-name needs --client-ca"))
	}
	if c.AckTimeout <= 0 || c.Attempts < 1 {
		errs = append(errs, errors.New("--ack-timeout must be positive and --attempts at least 1"))
	}
	if c.MaxTokenLife < 0 {
		errs = append(errs, errors.New("--max-token-lifetime must not be negative"))
	}
	if c.MaxBody < 1024 {
		errs = append(errs, errors.New("--max-body must be at least 1KiB"))
	}
	if err := c.NATS.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Which endpoints a configuration serves. The SSF receiver and back-channel logout
// authenticate each request themselves (the push authorization, the signed logout
// token); /v1/revocations is served only with the API credentials (the bearer token or
// mTLS), and /oauth2/revoke with them or --oauth-client. An endpoint that has no way to
// authenticate its callers is off (404), never open.

// hasAPICredentials reports whether callers can authenticate with the bearer token or
// a client certificate.
func (c *Config) hasAPICredentials() bool { return c.BearerTokenFile != "" || c.ClientCA != "" }

// revocationsOn reports whether POST /v1/revocations is served.
func (c *Config) revocationsOn() bool { return c.hasAPICredentials() }

// oauthRevokeOn reports whether POST /oauth2/revoke is served.
func (c *Config) oauthRevokeOn() bool {
	return c.HasJWKS() && (c.hasAPICredentials() || len(c.OAuthClients) > 0)
}

// logoutOn reports whether POST /backchannel-logout is served.
func (c *Config) logoutOn() bool { return c.HasJWKS() && len(c.LogoutAudiences) > 0 }

// ssfOn reports whether POST /ssf/events (and polling) is served.
func (c *Config) ssfOn() bool { return c.SSFTransmitters != "" }

// checkEndpoints refuses a configuration that serves nothing, or whose keys are for an
// /oauth2/revoke no caller could authenticate to.
func (c *Config) checkEndpoints() error {
	if c.hasAPICredentials() {
		return nil
	}
	if c.HasJWKS() && len(c.OAuthClients) == 0 && len(c.LogoutAudiences) == 0 {
		return errors.New("--jwks-file/--jwks-url without --logout-audience serve /oauth2/revoke, and no caller could authenticate to it: set --bearer-token-file, --client-ca with --tls-cert, or --oauth-client")
	}
	if !c.oauthRevokeOn() && !c.logoutOn() && !c.ssfOn() {
		return errors.New("no way to authenticate callers: set --bearer-token-file, or --client-ca with --tls-cert (there is no anonymous mode); or serve only endpoints that authenticate each request: --ssf-transmitters, --logout-audience with --jwks-file or --jwks-url")
	}
	return nil
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
