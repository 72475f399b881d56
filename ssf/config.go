package ssf

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Config is the --ssf-transmitters file.
type Config struct {
	Transmitters []Transmitter `json:"transmitters"`
}

// Policy is what a transmitter's event type does: revoke (publish the revocation),
// dry-run (count and log what would be revoked, publish nothing) or ignore
// (acknowledge and count only).
type Policy string

// Policies.
const (
	PolicyRevoke Policy = "revoke"
	PolicyDryRun Policy = "dry-run"
	PolicyIgnore Policy = "ignore"
)

// Transmitter is one entry of the file. The first six fields are CONTRACT section 5;
// the others are the receiver's own, each optional.
type Transmitter struct {
	Issuer                string   `json:"issuer"`                  // the SETs' iss, exactly
	JWKSURI               string   `json:"jwks_uri"`                // keys that sign its SETs
	Audience              string   `json:"audience"`                // the aud its SETs must carry
	PushAuthorizationFile string   `json:"push_authorization_file"` // pushes carry "Authorization: <content>"
	TokenIssuers          []string `json:"token_issuers"`           // iss of the access tokens it speaks for; default [issuer]
	PollEndpoint          string   `json:"poll_endpoint"`           // set to poll (RFC 8936)

	// JWKSFile is a local copy of the keys, instead of jwks_uri.
	JWKSFile string `json:"jwks_file,omitempty"`
	// LegacyTyp lists header typ values accepted besides secevent+jwt; "" accepts a SET
	// without typ (older RISC and SSE transmitters).
	LegacyTyp []string `json:"legacy_typ,omitempty"`
	// DryRun runs every event type in dry-run, whatever Events says.
	DryRun bool `json:"dry_run,omitempty"`
	// Events sets the policy of an event type, keyed by its URI or short name
	// (session-revoked, credential-change, account-disabled, ...); default revoke.
	Events map[string]Policy `json:"events,omitempty"`
	// EmailSubjects lets an email subject revoke (a cutoff on EmailClaim).
	EmailSubjects bool `json:"email_subjects,omitempty"`
	// UserClaim is the access-token claim a user subject's value is matched on: sub by
	// default; uid for Okta, oid for Entra ID (the operator allows it with --cutoff-claim).
	UserClaim string `json:"user_claim,omitempty"`
	// EmailClaim is the claim an email subject is matched on; default email.
	EmailClaim string `json:"email_claim,omitempty"`
	// Quirks of known transmitters.
	Quirks Quirks `json:"quirks,omitempty"`
	// MaxAge is the oldest iat accepted; default --max-token-lifetime (an older signal
	// can only revoke tokens that have expired).
	MaxAge Duration `json:"max_age,omitempty"`
	// BearerTokenFile holds the receiver's access token at the transmitter: sent on
	// polls and stream management as "Authorization: Bearer <content>".
	BearerTokenFile string `json:"bearer_token_file,omitempty"`
	// ClientCredentials, instead of BearerTokenFile, has the receiver obtain its access
	// token at the transmitter from an OAuth 2.0 token endpoint (RFC 6749 section 4.4),
	// as Okta's SSF API wants.
	ClientCredentials *ClientCredentials `json:"client_credentials,omitempty"`
	// PollInterval is the pause between polls that return nothing; default 1s.
	PollInterval Duration `json:"poll_interval,omitempty"`
	// Stream manages the stream at the transmitter (SSF 1.0 section 8).
	Stream *StreamSettings `json:"stream,omitempty"`
}

// ClientCredentials is an OAuth 2.0 client of the transmitter's authorization server
// (the client credentials grant, RFC 6749 section 4.4).
type ClientCredentials struct {
	// TokenURL is the authorization server's token endpoint.
	TokenURL string `json:"token_url"`
	ClientID string `json:"client_id"`
	// ClientSecretFile holds the client secret (read again when it changes).
	ClientSecretFile string `json:"client_secret_file"`
	// Scopes are requested with every token; none: the server's default.
	Scopes []string `json:"scopes,omitempty"`
	// AuthMethod is how the secret is sent (RFC 7591 names): client_secret_basic
	// (HTTP Basic, the default) or client_secret_post (in the form).
	AuthMethod string `json:"auth_method,omitempty"`
}

// Token endpoint authentication methods (RFC 7591 section 2).
const (
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
)

func (c *ClientCredentials) validate() error {
	var errs []error
	if err := absoluteURL(c.TokenURL); err != nil {
		errs = append(errs, fmt.Errorf("client_credentials.token_url: %w", err))
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("client_credentials.client_id is required"))
	}
	if c.ClientSecretFile == "" {
		errs = append(errs, errors.New("client_credentials.client_secret_file is required"))
	}
	switch c.AuthMethod {
	case "":
		c.AuthMethod = AuthClientSecretBasic
	case AuthClientSecretBasic, AuthClientSecretPost:
	default:
		errs = append(errs, fmt.Errorf("client_credentials.auth_method %q, want %s or %s", c.AuthMethod, AuthClientSecretBasic, AuthClientSecretPost))
	}
	for _, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \"\\") {
			errs = append(errs, fmt.Errorf("client_credentials.scopes: %q is not a scope token (RFC 6749 section 3.3)", s))
		}
	}
	return errors.Join(errs...)
}

// Quirks are switches for SET shapes older transmitters send.
type Quirks struct {
	// SubjectInEvent reads the subject from the event's "subject" member when the SET
	// has no sub_id (Okta, the SSE drafts).
	SubjectInEvent bool `json:"subject_in_event,omitempty"`
	// SubjectType reads "subject_type" (iss-sub, email, id_token_claims) as the subject
	// format (Google's RISC).
	SubjectType bool `json:"subject_type,omitempty"`
	// MillisecondTimestamps reads event_timestamp in milliseconds (Okta).
	MillisecondTimestamps bool `json:"millisecond_timestamps,omitempty"`
}

// StreamSettings ask the receiver to create (or reuse) its stream at the transmitter,
// found by discovery from issuer/.well-known/ssf-configuration, and to request a
// verification event.
type StreamSettings struct {
	// Delivery is push or poll; default push, or poll when poll_endpoint is set.
	Delivery string `json:"delivery,omitempty"`
	// PushEndpoint is the public URL of this receiver's POST /ssf/events.
	PushEndpoint string `json:"push_endpoint,omitempty"`
	// EventsRequested defaults to RevocationEvents.
	EventsRequested []string `json:"events_requested,omitempty"`
	// VerifyEvery requests a verification event this often; 0: once at start.
	VerifyEvery Duration `json:"verify_every,omitempty"`
}

// Duration is a time.Duration written as "90s", "1h".
type Duration time.Duration

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// LoadConfig reads and checks the file; unknown keys are errors.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ssf transmitters: %w", err)
	}
	return ParseConfig(b)
}

// ParseConfig reads and checks a transmitters file's content.
func ParseConfig(b []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, fmt.Errorf("ssf transmitters: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks every transmitter and fills the defaults.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Transmitters) == 0 {
		errs = append(errs, errors.New("no transmitters"))
	}
	seen := map[string]bool{}
	for i := range c.Transmitters {
		t := &c.Transmitters[i]
		if seen[t.Issuer] {
			errs = append(errs, fmt.Errorf("transmitter %q listed twice", t.Issuer))
		}
		seen[t.Issuer] = true
		if err := t.validate(); err != nil {
			errs = append(errs, fmt.Errorf("transmitter %d (%s): %w", i, t.Issuer, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("ssf transmitters: %w", errors.Join(errs...))
	}
	return nil
}

func (t *Transmitter) validate() error {
	var errs []error
	if err := absoluteURL(t.Issuer); err != nil {
		errs = append(errs, fmt.Errorf("issuer: %w", err))
	}
	if (t.JWKSURI == "") == (t.JWKSFile == "") {
		errs = append(errs, errors.New("set jwks_uri or jwks_file (one of them)"))
	} else if t.JWKSURI != "" {
		if err := absoluteURL(t.JWKSURI); err != nil {
			errs = append(errs, fmt.Errorf("jwks_uri: %w", err))
		}
	}
	if t.Audience == "" {
		errs = append(errs, errors.New("audience is required"))
	}
	polled := t.PollEndpoint != "" || (t.Stream != nil && t.Stream.Delivery == "poll")
	if t.PushAuthorizationFile == "" && !polled {
		errs = append(errs, errors.New("push_authorization_file is required unless it is polled (poll_endpoint)"))
	}
	if t.PollEndpoint != "" {
		if err := absoluteURL(t.PollEndpoint); err != nil {
			errs = append(errs, fmt.Errorf("poll_endpoint: %w", err))
		}
	}
	if t.ClientCredentials != nil {
		if t.BearerTokenFile != "" {
			errs = append(errs, errors.New("set bearer_token_file or client_credentials, not both"))
		}
		if err := t.ClientCredentials.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	authenticated := t.BearerTokenFile != "" || t.ClientCredentials != nil
	if polled && !authenticated {
		errs = append(errs, errors.New("polling needs bearer_token_file or client_credentials (the receiver's token at the transmitter)"))
	}
	if len(t.TokenIssuers) == 0 {
		t.TokenIssuers = []string{t.Issuer}
	}
	for _, iss := range t.TokenIssuers {
		if iss == "" {
			errs = append(errs, errors.New("token_issuers holds an empty issuer"))
		}
	}
	spellings := map[string][]string{} // short name -> the keys naming it
	for key, p := range t.Events {
		name, ok := shortName(key)
		if !ok {
			errs = append(errs, fmt.Errorf("events: unknown event type %q", key))
			continue
		}
		spellings[name] = append(spellings[name], key)
		if !slices.Contains([]Policy{PolicyRevoke, PolicyDryRun, PolicyIgnore}, p) {
			errs = append(errs, fmt.Errorf("events: %s: policy %q, want revoke, dry-run or ignore", key, p))
		}
		if p != PolicyIgnore && !isRevocation(name) {
			errs = append(errs, fmt.Errorf("events: %s publishes no revocation; only ignore applies", key))
		}
	}
	// One event type under two spellings (its URI and its short name, or two URIs of
	// it) with different policies would get whichever the map gives first.
	for _, name := range slices.Sorted(maps.Keys(spellings)) {
		keys := spellings[name]
		slices.Sort(keys)
		for _, k := range keys[1:] {
			if t.Events[k] != t.Events[keys[0]] {
				var both []string
				for _, k := range keys {
					both = append(both, fmt.Sprintf("%q: %s", k, t.Events[k]))
				}
				errs = append(errs, fmt.Errorf("events: event type %s is given different policies under several spellings (%s); keep one", name, strings.Join(both, ", ")))
				break
			}
		}
	}
	if t.UserClaim == "" {
		t.UserClaim = "sub"
	}
	if t.EmailClaim == "" {
		t.EmailClaim = "email"
	}
	if t.MaxAge < 0 || t.PollInterval < 0 {
		errs = append(errs, errors.New("max_age and poll_interval must not be negative"))
	}
	if t.PollInterval == 0 {
		t.PollInterval = Duration(time.Second)
	}
	if s := t.Stream; s != nil {
		switch s.Delivery {
		case "":
			s.Delivery = "push"
			if t.PollEndpoint != "" {
				s.Delivery = "poll"
			}
		case "push", "poll":
		default:
			errs = append(errs, fmt.Errorf("stream.delivery %q, want push or poll", s.Delivery))
		}
		if s.Delivery == "push" {
			if err := absoluteURL(s.PushEndpoint); err != nil {
				errs = append(errs, fmt.Errorf("stream.push_endpoint: %w", err))
			}
		}
		if !authenticated {
			errs = append(errs, errors.New("stream management needs bearer_token_file or client_credentials"))
		}
		if len(s.EventsRequested) == 0 {
			s.EventsRequested = RevocationEvents
		}
	}
	return errors.Join(errs...)
}

// policy returns what the event type named name does at this transmitter.
func (t *Transmitter) policy(name string) Policy {
	p := PolicyRevoke
	for key, v := range t.Events {
		if n, _ := shortName(key); n == name {
			p = v
		}
	}
	if t.DryRun && p == PolicyRevoke {
		p = PolicyDryRun
	}
	return p
}

func absoluteURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}
