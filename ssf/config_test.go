package ssf

import (
	"strings"
	"testing"
	"time"
)

const minimal = `transmitters:
  - issuer: https://idp.example.com
    jwks_uri: https://idp.example.com/ssf/jwks
    audience: https://revoked.example.com
    push_authorization_file: /secrets/ssf-push
`

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(minimal + "    max_age: 2h\n    events: {credential-change: dry-run}\n"))
	if err != nil {
		t.Fatal(err)
	}
	tr := c.Transmitters[0]
	if len(tr.TokenIssuers) != 1 || tr.TokenIssuers[0] != "https://idp.example.com" || tr.UserClaim != "sub" || tr.EmailClaim != "email" || time.Duration(tr.MaxAge) != 2*time.Hour {
		t.Fatalf("%+v", tr)
	}
	if tr.policy("credential-change") != PolicyDryRun || tr.policy("session-revoked") != PolicyRevoke {
		t.Fatal("policies")
	}
}

// The same policy under two spellings is no conflict.
func TestParseConfigSamePolicyTwoSpellings(t *testing.T) {
	c, err := ParseConfig([]byte(minimal + "    events:\n      verification: ignore\n      https://schemas.openid.net/secevent/sse/event-type/verification: ignore\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Transmitters[0].policy("verification"); p != PolicyIgnore {
		t.Fatalf("policy %s", p)
	}
}

const clientCredentials = `    client_credentials:
      token_url: https://idp.example.com/oauth2/v1/token
      client_id: revoked
      client_secret_file: /secrets/ssf-oauth
`

// client_credentials stands for bearer_token_file where the receiver needs a token at
// the transmitter; the secret goes in HTTP Basic unless said otherwise.
func TestParseConfigClientCredentials(t *testing.T) {
	c, err := ParseConfig([]byte(minimal + "    poll_endpoint: https://idp.example.com/poll\n    stream: {delivery: poll}\n" + clientCredentials))
	if err != nil {
		t.Fatal(err)
	}
	if cc := c.Transmitters[0].ClientCredentials; cc == nil || cc.AuthMethod != AuthClientSecretBasic || cc.ClientID != "revoked" {
		t.Fatalf("%+v", cc)
	}
}

func TestParseConfigRejects(t *testing.T) {
	cases := map[string]struct{ yaml, want string }{
		"unknown key":      {minimal + "    colour: blue\n", "unknown field"},
		"no transmitters":  {"transmitters: []\n", "no transmitters"},
		"no audience":      {strings.Replace(minimal, "    audience: https://revoked.example.com\n", "", 1), "audience is required"},
		"no keys":          {strings.Replace(minimal, "    jwks_uri: https://idp.example.com/ssf/jwks\n", "", 1), "jwks_uri or jwks_file"},
		"relative issuer":  {strings.Replace(minimal, "issuer: https://idp.example.com", "issuer: idp", 1), "issuer"},
		"no push nor poll": {strings.Replace(minimal, "    push_authorization_file: /secrets/ssf-push\n", "", 1), "push_authorization_file is required"},
		"poll, no bearer":  {minimal + "    poll_endpoint: https://idp.example.com/poll\n", "bearer_token_file"},
		"bad policy":       {minimal + "    events: {session-revoked: maybe}\n", "policy \"maybe\""},
		"unknown event":    {minimal + "    events: {session-ended: ignore}\n", "unknown event type"},
		"verification run": {minimal + "    events: {verification: revoke}\n", "only ignore applies"},
		"two spellings": {minimal + "    events:\n      credential-change: ignore\n      https://schemas.openid.net/secevent/caep/event-type/credential-change: revoke\n",
			`event type credential-change is given different policies under several spellings ("credential-change": ignore, "https://schemas.openid.net/secevent/caep/event-type/credential-change": revoke)`},
		"twice":            {minimal + strings.TrimPrefix(minimal, "transmitters:\n"), "listed twice"},
		"bad duration":     {minimal + "    max_age: soon\n", "duration"},
		"stream no bearer": {minimal + "    stream: {push_endpoint: https://r.example/ssf/events}\n", "stream management needs bearer_token_file"},
		"bearer and oauth": {minimal + "    bearer_token_file: /x\n" + clientCredentials, "set bearer_token_file or client_credentials, not both"},
		"oauth no token url": {minimal + strings.Replace(clientCredentials, "      token_url: https://idp.example.com/oauth2/v1/token\n", "", 1),
			"client_credentials.token_url"},
		"oauth no client id": {minimal + strings.Replace(clientCredentials, "      client_id: revoked\n", "", 1), "client_credentials.client_id is required"},
		"oauth no secret": {minimal + strings.Replace(clientCredentials, "      client_secret_file: /secrets/ssf-oauth\n", "", 1),
			"client_credentials.client_secret_file is required"},
		"oauth bad method":   {minimal + clientCredentials + "      auth_method: private_key_jwt\n", "client_credentials.auth_method \"private_key_jwt\""},
		"oauth bad scope":    {minimal + clientCredentials + "      scopes: [\"a b\"]\n", "not a scope token"},
		"stream push no url": {minimal + "    bearer_token_file: /x\n    stream: {delivery: push}\n", "stream.push_endpoint"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}
