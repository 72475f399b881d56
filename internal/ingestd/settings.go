// Package ingestd is the composition root of `revoked ingest`: its settings (the
// ingest API's configuration and the flag groups shared with the sidecar), the command
// line, the logger and the metrics registry, and the run until shutdown. The ingest
// API itself (handlers, publishing) is package ingest.
package ingestd

import (
	"errors"
	"flag"
	"time"

	"github.com/revoked-dev/revoked/ingest"
	"github.com/revoked-dev/revoked/internal/flags"
)

// Settings are the settings of `revoked ingest`; every field has its flag and the
// environment variable REVOKED_<FLAG>.
type Settings struct {
	ingest.Config
	// Keys are the flags shared with the sidecar (--jwks-file, --jwks-url, --issuer,
	// --audience, --leeway); ParseSettings copies them into Config.
	Keys     flags.Keys
	Shutdown flags.Shutdown // --shutdown-delay, --shutdown-timeout
	Log      flags.Logging  // --log-level
}

// RegisterFlags adds every setting to fs with its default.
func (s *Settings) RegisterFlags(fs *flag.FlagSet) {
	c := &s.Config
	fs.StringVar(&c.Listen, "listen", ingest.DefaultListen, "`address` of the ingest API")
	fs.StringVar(&c.AdminAddr, "admin-addr", ingest.DefaultAdminAddr, "`address` of /healthz, /readyz and /metrics")
	fs.StringVar(&c.BearerTokenFile, "bearer-token-file", "", "`file` holding the bearer token callers must send (/v1/revocations is off without it or --client-ca)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "certificate `file`: serve the API over TLS")
	fs.StringVar(&c.TLSKey, "tls-key", "", "key `file` of --tls-cert")
	fs.StringVar(&c.ClientCA, "client-ca", "", "CA bundle `file`: a client certificate it signs authenticates the caller (mTLS; needs --tls-cert)")
	fs.Var(&c.ClientCertNames, "client-cert-name", "`NAME` a client certificate must carry (subject CN, or a DNS, URI or email SAN) to authenticate (repeatable); none: any --client-ca signs")
	s.Keys.RegisterFlags(fs)
	fs.Var(&c.LogoutAudiences, "logout-audience", "`CLIENT_ID` that a logout token's aud must contain (repeatable); /backchannel-logout needs one")
	fs.Var(&c.OAuthClients, "oauth-client", "`id:secret-file` of a client allowed to call /oauth2/revoke with client_secret_basic (repeatable); none: the bearer token or mTLS")
	fs.Var(&c.OAuthPrivileged, "oauth-privileged-client", "`id` of an --oauth-client that may revoke any client's tokens (repeatable); the others revoke only tokens issued to them")
	fs.DurationVar(&c.LogoutMaxAge, "logout-max-age", ingest.DefaultLogoutMaxAge, "oldest iat accepted on a logout token; with 2 × --leeway it must fit the stream's 2m duplicate window")
	fs.Var(&c.LogoutCutoffs, "logout-cutoff", "what a logout revokes, `[ISSUER=]MODE` (repeatable): sid (the IdP's access tokens carry sid), client (the user's tokens at the logging-out client), user (the user's tokens at every client); default sid")
	fs.Var(&c.LogoutNoExp, "logout-allow-missing-exp", "`ISSUER` whose logout tokens may lack exp (Ory Hydra's; the iat window bounds them) (repeatable)")
	c.NATS.RegisterFlags(fs)
	c.Events.RegisterFlags(fs)
	fs.DurationVar(&c.AckTimeout, "ack-timeout", 2*time.Second, "how long one publish attempt waits for the stream's ack")
	fs.IntVar(&c.Attempts, "attempts", 3, "publish attempts (same Nats-Msg-Id, never doubled) before answering 503")
	c.MaxBody = ingest.DefaultMaxBody
	fs.Var(&c.MaxBody, "max-body", "largest request `SIZE`, in bytes or with a KiB/MiB suffix")
	fs.StringVar(&c.SSFTransmitters, "ssf-transmitters", "", "YAML `file` of the Shared Signals transmitters whose SETs POST /ssf/events takes (push) or that it polls; empty: off")
	fs.DurationVar(&c.MaxTokenLife, "max-token-lifetime", 24*time.Hour, "longest lifetime of a token: the exp a Shared Signals jwt_id revocation gets from now, and the oldest SET accepted")
	s.Shutdown.RegisterFlags(fs)
	s.Log.RegisterFlags(fs)
}

const usage = `Usage: revoked ingest [flags]

Serves the ingest API, for identity providers that cannot publish to NATS:
  POST /v1/revocations     one contract event, or a JSON array of them
  POST /oauth2/revoke      RFC 7009 token revocation (form: token, token_type_hint)
  POST /backchannel-logout OpenID Connect Back-Channel Logout 1.0 (form: logout_token)
  POST /ssf/events         Shared Signals push (RFC 8935) of SETs from --ssf-transmitters
and /healthz, /readyz, /metrics on --admin-addr. Each request is answered once the stream
has acknowledged its events; 503 means it was not, and a retry is never doubled.

Callers authenticate with the bearer token (--bearer-token-file) or a client certificate
(--client-ca, --client-cert-name); /oauth2/revoke with --oauth-client credentials when
set (a client revokes its own tokens only); the IdP's signed logout token authenticates
/backchannel-logout, and --logout-cutoff says what a logout revokes; a transmitter's push
authorization and signed SETs authenticate /ssf/events. Without --bearer-token-file and
--client-ca, /v1/revocations is off (and /oauth2/revoke without --oauth-client): the
ingest may serve only the endpoints that authenticate each request. --jwks-file or
--jwks-url verifies the tokens revoked at /oauth2/revoke and the logout tokens.

Every flag can also be set as REVOKED_<FLAG> (--nats-url is REVOKED_NATS_URL).

Flags:
`

// ParseSettings reads args (after the subcommand) and the environment into Settings
// and validates them. For --help it returns a *flags.Help.
func ParseSettings(args []string) (Settings, error) {
	var s Settings
	fs := flag.NewFlagSet("revoked ingest", flag.ContinueOnError)
	s.RegisterFlags(fs)
	if err := flags.Parse(fs, usage, args); err != nil {
		return Settings{}, err
	}
	s.copyKeys()
	return s, s.Validate()
}

// copyKeys gives the ingest API the settings of the flag group it shares with the
// sidecar.
func (s *Settings) copyKeys() {
	c, k := &s.Config, s.Keys
	c.JWKSFile, c.JWKSURL, c.Leeway = k.JWKSFile, k.JWKSURL, k.Leeway
	c.Issuers, c.Audiences = k.Issuers, k.Audiences
}

// Validate checks the settings once at startup.
func (s *Settings) Validate() error {
	return errors.Join(s.Config.Validate(), s.Shutdown.Validate(), s.Log.Validate())
}
