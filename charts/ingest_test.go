package charts

// The ingest API's flags the chart renders from values: the mTLS allow-list, OAuth
// clients, back-channel logout, cutoff claims and the Shared Signals transmitters file
// (loaded with the ssf package's own loader, so the chart cannot render a file that
// `revoked ingest` refuses).

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/revoked-dev/revoked/internal/ingestd"
	"github.com/revoked-dev/revoked/ssf"
)

// flagValues returns every value of a repeated --name=value argument, in order.
func flagValues(c corev1.Container, name string) []string {
	var out []string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			out = append(out, v)
		}
	}
	return out
}

// mountedFile says where a file a container reads comes from: the kind ("Secret" or
// "ConfigMap"), the object's name and the key, found through the volume mounted at the
// file's directory. ok is false for a file no volume provides.
type mountedFile struct{ kind, name, key string }

func fileSource(spec corev1.PodSpec, c corev1.Container, file string) (mountedFile, bool) {
	for _, vm := range c.VolumeMounts {
		if filepath.Dir(file) != filepath.Clean(vm.MountPath) {
			continue
		}
		for _, v := range spec.Volumes {
			switch {
			case v.Name != vm.Name:
			case v.Secret != nil:
				return mountedFile{"Secret", v.Secret.SecretName, filepath.Base(file)}, true
			case v.ConfigMap != nil:
				return mountedFile{"ConfigMap", v.ConfigMap.Name, filepath.Base(file)}, true
			}
		}
	}
	return mountedFile{}, false
}

// ingestPod returns the ingest Deployment and its container.
func ingestPod(t *testing.T, m *manifests) (appsv1.Deployment, corev1.Container) {
	t.Helper()
	for _, d := range m.deployments {
		if strings.HasSuffix(d.Name, "-ingest") {
			return d, container(t, d.Spec.Template.Spec, "ingest")
		}
	}
	t.Fatal("no ingest Deployment")
	return appsv1.Deployment{}, corev1.Container{}
}

// loadSSF loads the rendered --ssf-transmitters file with ssf.LoadConfig, from a copy at
// the path the container reads it; nil when the flag is not set.
func loadSSF(t *testing.T, m *manifests, spec corev1.PodSpec, c corev1.Container) *ssf.Config {
	t.Helper()
	path := flags(c)["ssf-transmitters"]
	if path == "" {
		return nil
	}
	src, ok := fileSource(spec, c, path)
	if !ok || src.kind != "ConfigMap" {
		t.Fatalf("--ssf-transmitters %s is not mounted from a ConfigMap (%+v)", path, src)
	}
	var data string
	for _, cm := range m.configMaps {
		if cm.Name == src.name {
			data, ok = cm.Data[src.key]
		}
	}
	if !ok {
		t.Fatalf("ConfigMap %s with key %s is not rendered", src.name, src.key)
	}
	file := filepath.Join(t.TempDir(), src.key)
	if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ssf.LoadConfig(file)
	if err != nil {
		t.Fatalf("revoked ingest would refuse the rendered transmitters file: %v\n%s", err, data)
	}
	return cfg
}

// TestIngestSSFAndLogout renders testdata/ssf-values.yaml (every key of the transmitters,
// the OAuth clients and logout) and checks what `revoked ingest` would read: the
// arguments parse, the transmitters file loads and says what the values say, and every
// file it names is the key of the Secret or ConfigMap the values name.
func TestIngestSSFAndLogout(t *testing.T) {
	m := render(t, "-f", filepath.Join("testdata", "ssf-values.yaml"))
	checkIngest(t, m) // also: ingestd.ParseSettings accepts the arguments
	dep, c := ingestPod(t, m)
	spec := dep.Spec.Template.Spec
	for _, p := range m.podSpecs() {
		checkPod(t, p.name, p.spec)
	}

	cfg := loadSSF(t, m, spec, c)
	if cfg == nil {
		t.Fatal("no --ssf-transmitters")
	}
	d := func(s string) ssf.Duration {
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return ssf.Duration(v)
	}
	want := []ssf.Transmitter{{
		Issuer:                "https://idp.example.com/realms/shop",
		JWKSURI:               "https://idp.example.com/realms/shop/ssf/jwks",
		Audience:              "https://revoked.example.com",
		PushAuthorizationFile: "/etc/revoked/ingest/ssf/0/push/authorization",
		TokenIssuers:          []string{"https://idp.example.com/realms/shop"},
		LegacyTyp:             []string{""},
		Events: map[string]ssf.Policy{"session-revoked": ssf.PolicyRevoke, "credential-change": ssf.PolicyDryRun,
			"https://schemas.openid.net/secevent/risc/event-type/account-purged": ssf.PolicyIgnore},
		UserClaim:       "sub",
		EmailClaim:      "email",
		MaxAge:          d("12h"),
		BearerTokenFile: "/etc/revoked/ingest/ssf/0/bearer/access-token",
		PollInterval:    d("1s"),
		Stream: &ssf.StreamSettings{Delivery: "push", PushEndpoint: "https://revoked.example.com/ssf/events",
			EventsRequested: []string{"https://schemas.openid.net/secevent/caep/event-type/session-revoked"}, VerifyEvery: d("1h")},
	}, {
		Issuer:          "https://okta.example.com",
		Audience:        "revoked",
		JWKSFile:        "/etc/revoked/ingest/ssf/1/jwks/keys.json",
		TokenIssuers:    []string{"https://okta.example.com"},
		PollEndpoint:    "https://okta.example.com/ssf/poll",
		DryRun:          true,
		EmailSubjects:   true,
		UserClaim:       "uid",
		EmailClaim:      "email",
		Quirks:          ssf.Quirks{SubjectInEvent: true, MillisecondTimestamps: true},
		BearerTokenFile: "/etc/revoked/ingest/ssf/1/bearer/token",
		PollInterval:    d("5s"),
	}, {
		Issuer:       "https://ssf.example.net",
		Audience:     "revoked",
		JWKSURI:      "https://ssf.example.net/jwks",
		TokenIssuers: []string{"https://ssf.example.net"},
		PollEndpoint: "https://ssf.example.net/poll",
		UserClaim:    "sub",
		EmailClaim:   "email",
		ClientCredentials: &ssf.ClientCredentials{TokenURL: "https://ssf.example.net/oauth2/token", ClientID: "revoked-receiver",
			ClientSecretFile: "/etc/revoked/ingest/ssf/2/oauth/secret", Scopes: []string{"ssf.read", "ssf.manage"}, AuthMethod: ssf.AuthClientSecretPost},
		PollInterval: d("1s"),
	}}
	if !reflect.DeepEqual(cfg.Transmitters, want) {
		t.Errorf("transmitters file loads as\n%+v\nwant\n%+v", cfg.Transmitters, want)
	}
	// Each file the transmitters file names is the value's Secret or ConfigMap key.
	files := map[string]mountedFile{
		"/etc/revoked/ingest/ssf/0/push/authorization":  {"Secret", "ssf-keycloak-push", "authorization"},
		"/etc/revoked/ingest/ssf/0/bearer/access-token": {"Secret", "ssf-keycloak-token", "access-token"},
		"/etc/revoked/ingest/ssf/1/jwks/keys.json":      {"ConfigMap", "okta-ssf-jwks", "keys.json"},
		"/etc/revoked/ingest/ssf/1/bearer/token":        {"Secret", "ssf-okta-token", "token"},
		"/etc/revoked/ingest/ssf/2/oauth/secret":        {"Secret", "ssf-net-oauth", "secret"},
	}
	for _, tr := range cfg.Transmitters {
		clientSecret := ""
		if tr.ClientCredentials != nil {
			clientSecret = tr.ClientCredentials.ClientSecretFile
		}
		for _, f := range []string{tr.PushAuthorizationFile, tr.BearerTokenFile, tr.JWKSFile, clientSecret} {
			if f == "" {
				continue
			}
			if got, ok := fileSource(spec, c, f); !ok || got != files[f] {
				t.Errorf("%s: %s comes from %+v, want %+v", tr.Issuer, f, got, files[f])
			}
		}
	}

	// OAuth clients: each secret file is its Secret's key; only the privileged one is.
	oauth := map[string]mountedFile{"shop": {"Secret", "oauth-shop", "client-secret"}, "admin-console": {"Secret", "oauth-admin", "secret"}}
	clients := flagValues(c, "oauth-client")
	if len(clients) != len(oauth) {
		t.Errorf("--oauth-client %v, want %d", clients, len(oauth))
	}
	for _, oc := range clients {
		id, file, _ := strings.Cut(oc, ":")
		if got, ok := fileSource(spec, c, file); !ok || got != oauth[id] {
			t.Errorf("client %s: secret file %s from %+v, want %+v", id, file, got, oauth[id])
		}
	}
	if p := flagValues(c, "oauth-privileged-client"); !slices.Equal(p, []string{"admin-console"}) {
		t.Errorf("--oauth-privileged-client %v", p)
	}

	// Logout.
	for name, want := range map[string][]string{
		"logout-audience":          {"shop"},
		"logout-cutoff":            {"client", "https://idp.example.com=sid"},
		"logout-allow-missing-exp": {"https://hydra.example.com"},
		"logout-max-age":           {"60s"},
	} {
		if got := flagValues(c, name); !slices.Equal(got, want) {
			t.Errorf("--%s %v, want %v", name, got, want)
		}
	}

	// One cutoffClaims list for ingest and every sidecar: a sidecar that did not allow uid
	// would skip the cutoffs the Okta transmitter publishes.
	if got := flagValues(c, "cutoff-claim"); !slices.Equal(got, []string{"uid", "email"}) {
		t.Errorf("ingest --cutoff-claim %v", got)
	}
	for _, p := range m.podSpecs() {
		for _, rc := range append(slices.Clone(p.spec.InitContainers), p.spec.Containers...) {
			if rc.Name == "revoked" && !slices.Equal(flagValues(rc, "cutoff-claim"), []string{"uid", "email"}) {
				t.Errorf("%s: sidecar --cutoff-claim %v", p.name, flagValues(rc, "cutoff-claim"))
			}
		}
	}

	// The file is read at start: a change to it rolls the pods.
	sum := dep.Spec.Template.Annotations["checksum/ssf-transmitters"]
	m2 := render(t, "-f", filepath.Join("testdata", "ssf-values.yaml"), "--set", "ingest.ssf.transmitters[1].pollInterval=6s")
	dep2, _ := ingestPod(t, m2)
	if sum == "" || dep2.Spec.Template.Annotations["checksum/ssf-transmitters"] == sum {
		t.Errorf("checksum/ssf-transmitters %q, after a change %q", sum, dep2.Spec.Template.Annotations["checksum/ssf-transmitters"])
	}
}

// TestIngestMTLSAllowList: mutual TLS renders --client-cert-name for each allowed name,
// and the render fails without one (any certificate the CA signs could publish).
func TestIngestMTLSAllowList(t *testing.T) {
	base := []string{"sidecar.allowAnyAudience=true", "ingest.enabled=true", "ingest.auth.clientCASecret.name=ca", "ingest.tls.secretName=tls"}
	m := render(t, sets(append(base, "ingest.auth.clientCertNames={idp.example.com,spiffe://cluster.local/ns/idp/sa/keycloak}")...)...)
	checkIngest(t, m)
	_, c := ingestPod(t, m)
	if got := flagValues(c, "client-cert-name"); !slices.Equal(got, []string{"idp.example.com", "spiffe://cluster.local/ns/idp/sa/keycloak"}) {
		t.Errorf("--client-cert-name %v", got)
	}
	if _, err := helm(t, append([]string{"template", "rel", chartDir}, sets(base...)...)...); err == nil ||
		!strings.Contains(err.Error(), "needs ingest.auth.clientCertNames") {
		t.Errorf("mutual TLS without an allow-list: %v", err)
	}
}

// TestIngestJWKSFile: the IdP's keys from a ConfigMap (--jwks-file), for logout tokens
// and /oauth2/revoke, mounted where the flag says.
func TestIngestJWKSFile(t *testing.T) {
	m := render(t, sets("sidecar.allowAnyAudience=true", "ingest.enabled=true", "ingest.auth.bearerTokenSecret.name=tok",
		"ingest.auth.jwksConfigMap.name=idp-jwks", "ingest.logout.audiences={shop}")...)
	checkIngest(t, m)
	dep, c := ingestPod(t, m)
	file := flags(c)["jwks-file"]
	if got, ok := fileSource(dep.Spec.Template.Spec, c, file); !ok || got != (mountedFile{"ConfigMap", "idp-jwks", "jwks.json"}) {
		t.Errorf("--jwks-file %q from %+v", file, got)
	}
}

// TestLogoutMaxAge: the chart and `revoked ingest` agree on the longest logout window
// (with the default 10s leeway, 100s fits the stream's 2m duplicate window).
func TestLogoutMaxAge(t *testing.T) {
	base := []string{"sidecar.allowAnyAudience=true", "ingest.enabled=true", "ingest.auth.bearerTokenSecret.name=tok"}
	for maxAge, ok := range map[string]bool{"90s": true, "1m40s": true, "1.5m": true, "100s": true, "101s": false, "2m": false, "0s": false} {
		t.Run(maxAge, func(t *testing.T) {
			args := append([]string{"template", "rel", chartDir}, sets(append(base, "ingest.logout.maxAge="+maxAge)...)...)
			out, err := helm(t, args...)
			if !ok {
				if err == nil || !strings.Contains(err.Error(), "at most 100s") {
					t.Errorf("rendered, or not for the window: %v", err)
				}
				// And the binary would refuse it too.
				if _, err := ingestd.ParseSettings([]string{"--bearer-token-file=/t", "--logout-max-age=" + maxAge}); err == nil {
					t.Errorf("revoked ingest accepts --logout-max-age=%s, which the chart refuses", maxAge)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkIngest(t, decodeAll(t, out))
		})
	}
}

// TestIngestWithoutAPICredentials: without a bearer token or a client CA, ingest serves
// only the endpoints that authenticate each request (Shared Signals, back-channel logout,
// OAuth clients), and the chart renders each alone, with arguments ingest accepts.
func TestIngestWithoutAPICredentials(t *testing.T) {
	tr := "ingest.ssf.transmitters[0]."
	only := map[string][]string{
		"Shared Signals": {tr + "issuer=https://idp.example.com", tr + "audience=revoked", tr + "jwksUri=https://idp.example.com/ssf/jwks",
			tr + "pushAuthorizationSecret.name=push"},
		"back-channel logout": {"ingest.auth.jwksUrl=https://idp.example.com/jwks", "ingest.logout.audiences={shop}"},
		"OAuth clients": {"ingest.auth.jwksUrl=https://idp.example.com/jwks", "ingest.auth.oauthClients[0].id=shop",
			"ingest.auth.oauthClients[0].secretName=oauth-shop"},
	}
	for name, extra := range only {
		t.Run(name, func(t *testing.T) {
			m := render(t, sets(append([]string{"sidecar.allowAnyAudience=true", "ingest.enabled=true"}, extra...)...)...)
			checkIngest(t, m)
			if _, c := ingestPod(t, m); flags(c)["bearer-token-file"] != "" || flags(c)["client-ca"] != "" {
				t.Errorf("API credentials rendered: %v", c.Args)
			}
		})
	}
}

// TestIngestTemplateFailures: settings `revoked ingest` (or its ssf loader) would refuse
// at start fail the render, with a message naming the value.
func TestIngestTemplateFailures(t *testing.T) {
	base := []string{"sidecar.allowAnyAudience=true", "ingest.enabled=true", "ingest.auth.bearerTokenSecret.name=tok"}
	jwks := "ingest.auth.jwksUrl=https://idp.example.com/jwks"
	tr := "ingest.ssf.transmitters[0]."
	pushed := []string{tr + "issuer=https://idp.example.com", tr + "audience=revoked", tr + "jwksUri=https://idp.example.com/ssf/jwks",
		tr + "pushAuthorizationSecret.name=push"}
	var second []string // the same transmitter again, as transmitters[1]
	for _, p := range pushed {
		second = append(second, strings.Replace(p, "[0]", "[1]", 1))
	}
	cases := map[string]struct {
		sets []string
		want string
	}{
		// Before: the chart took a JWKS URL as caller authentication; ingest refuses to start.
		"JWKS alone authenticates no caller": {[]string{"sidecar.allowAnyAudience=true", "ingest.enabled=true", jwks}, "to which no caller could authenticate"},
		"nothing to serve":                   {[]string{"sidecar.allowAnyAudience=true", "ingest.enabled=true"}, "needs caller authentication"},
		"allow-list without a CA":            {append(slices.Clone(base), "ingest.auth.clientCertNames={idp}"), "clientCertNames needs ingest.auth.clientCASecret.name"},
		"OAuth clients without JWKS":         {append(slices.Clone(base), "ingest.auth.oauthClients[0].id=shop", "ingest.auth.oauthClients[0].secretName=s"), "oauthClients needs ingest.auth.jwksUrl"},
		"two JWKS sources":                   {append(slices.Clone(base), jwks, "ingest.auth.jwksConfigMap.name=keys"), "exclude each other"},
		"logout without JWKS":                {append(slices.Clone(base), "ingest.logout.audiences={shop}"), "logout.audiences needs ingest.auth.jwksUrl"},
		"logout issuer not accepted": {append(slices.Clone(base), jwks, "ingest.auth.issuers={https://idp.example.com}", "ingest.logout.allowMissingExp={https://hydra.example.com}"),
			"issuer https://hydra.example.com, which is not in ingest.auth.issuers"},
		"transmitter with two key sources":         {append(append(slices.Clone(base), pushed...), tr+"jwksConfigMap.name=keys"), "set jwksUri or jwksConfigMap, one of them"},
		"pushed transmitter without authorization": {append(slices.Clone(base), pushed[:3]...), "pushAuthorizationSecret is required unless it is polled"},
		"polled transmitter without a token": {append(append(slices.Clone(base), pushed[:3]...), tr+"pollEndpoint=https://idp.example.com/poll"),
			"polling and stream management need bearerTokenSecret or clientCredentials"},
		"token and OAuth client": {append(append(slices.Clone(base), pushed...), tr+"bearerTokenSecret.name=t", tr+"clientCredentials.tokenUrl=https://idp.example.com/token",
			tr+"clientCredentials.clientId=revoked", tr+"clientCredentials.clientSecretSecret.name=s"), "set bearerTokenSecret or clientCredentials, not both"},
		"event type spelled twice": {append(append(slices.Clone(base), pushed...), tr+"events.credential-change=ignore",
			tr+"events.https://schemas\\.openid\\.net/secevent/caep/event-type/credential-change=revoke"),
			"event type credential-change is given different policies under two spellings"},
		"pushed stream without its endpoint": {append(append(slices.Clone(base), pushed...), tr+"bearerTokenSecret.name=t", tr+"stream.delivery=push"),
			"stream.pushEndpoint (this receiver's public /ssf/events URL) is required"},
		"issuer listed twice":            {append(append(slices.Clone(base), pushed...), second...), "the issuer is listed twice"},
		"user claim the sidecars refuse": {append(append(slices.Clone(base), pushed...), tr+"userClaim=uid"), "revokes by claim uid: add it to cutoffClaims"},
		"email subjects the sidecars refuse": {append(append(slices.Clone(base), pushed...), tr+"emailSubjects=true", "cutoffClaims={uid}"),
			"revokes by claim email: add it to cutoffClaims"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := helm(t, append([]string{"template", "rel", chartDir}, sets(tc.sets...)...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestIngestSchemaRejects: the schema refuses the new values' typos and wrong values.
func TestIngestSchemaRejects(t *testing.T) {
	tr := "ingest.ssf.transmitters[0]."
	cases := map[string]struct{ set, want string }{
		"the file's own key":         {tr + "jwks_uri=https://idp/jwks", "additional properties 'jwks_uri' not allowed"},
		"unknown quirk":              {tr + "quirks.okta=true", "additional properties 'okta' not allowed"},
		"policy":                     {tr + "events.session-revoked=block", "at '/ingest/ssf/transmitters/0/events/session-revoked'"},
		"unknown event type":         {tr + "events.session-ended=ignore", "additional properties 'session-ended' not allowed"},
		"verification revokes":       {tr + "events.verification=revoke", "at '/ingest/ssf/transmitters/0/events/verification'"},
		"transmitter keys over HTTP": {tr + "jwksUri=http://idp/jwks", "at '/ingest/ssf/transmitters/0/jwksUri'"},
		"no audience":                {tr + "issuer=https://idp", "missing property 'audience'"},
		"stream delivery":            {tr + "stream.delivery=webhook", "at '/ingest/ssf/transmitters/0/stream/delivery'"},
		"OAuth auth method":          {tr + "clientCredentials.authMethod=private_key_jwt", "at '/ingest/ssf/transmitters/0/clientCredentials/authMethod'"},
		"logout mode":                {"ingest.logout.cutoff=session", "at '/ingest/logout/cutoff'"},
		"logout max age":             {"ingest.logout.maxAge=90", "at '/ingest/logout/maxAge'"},
		"OAuth client id with colon": {"ingest.auth.oauthClients[0].id=a:b", "at '/ingest/auth/oauthClients/0/id'"},
		"unknown auth key":           {"ingest.auth.clientCertName=x", "additional properties 'clientCertName' not allowed"},
		"cutoff claim not a list":    {"cutoffClaims=uid", "at '/cutoffClaims'"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := helm(t, "template", "rel", chartDir, "--set", tc.set)
			if err == nil || !strings.Contains(err.Error(), "values don't meet the specifications of the schema") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("--set %s: error does not say %q:\n%v", tc.set, tc.want, err)
			}
		})
	}
}

// TestSSFRenderedOrRefused: for random transmitters, built from valid and invalid
// pieces, the chart either refuses to render with its own message (the schema's or a
// revoked: failure, never a template crash) or renders a file ssf.LoadConfig accepts.
// The chart can never render a transmitters file that `revoked ingest` refuses.
func TestSSFRenderedOrRefused(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 12))
	pick := func(opts ...any) any { return opts[rng.IntN(len(opts))] }
	// A valid transmitter, then up to three random changes, valid or not.
	changes := []func(tr map[string]any){
		func(tr map[string]any) { delete(tr, "audience") },
		func(tr map[string]any) { tr["jwksConfigMap"] = map[string]any{"name": "keys"} },
		func(tr map[string]any) {
			delete(tr, "jwksUri")
			tr["jwksConfigMap"] = map[string]any{"name": "keys", "key": "k.json"}
		},
		func(tr map[string]any) { delete(tr, "pushAuthorizationSecret") },
		func(tr map[string]any) { tr["pollEndpoint"] = "https://a.example/poll" },
		func(tr map[string]any) { tr["bearerTokenSecret"] = map[string]any{"name": "tok"} },
		func(tr map[string]any) {
			tr["clientCredentials"] = map[string]any{"tokenUrl": "https://a.example/token", "clientId": "revoked",
				"clientSecretSecret": map[string]any{"name": "oauth"}, "scopes": []string{"ssf.read"}}
		},
		func(tr map[string]any) {
			tr["stream"] = pick(map[string]any{}, map[string]any{"delivery": "push"}, map[string]any{"delivery": "poll"},
				map[string]any{"pushEndpoint": "https://r.example/ssf/events"},
				map[string]any{"delivery": "push", "pushEndpoint": "https://r.example/ssf/events", "verifyEvery": "1h"})
		},
		func(tr map[string]any) {
			tr["events"] = pick(map[string]any{"verification": "ignore"}, map[string]any{"verification": "revoke"},
				map[string]any{"session-revoked": "dry-run", ssf.CredentialChange: "ignore"}, map[string]any{"session-ended": "ignore"},
				map[string]any{"credential-change": "dry-run", ssf.CredentialChange: pick("ignore", "dry-run")})
		},
		func(tr map[string]any) { tr["userClaim"] = "uid" },
		func(tr map[string]any) { tr["emailSubjects"] = pick(true, false) },
		func(tr map[string]any) { tr["maxAge"] = pick("1h", "0", "-1h") },
		func(tr map[string]any) { tr["tokenIssuers"] = pick([]string{"https://a.example"}, []string{""}) },
		func(tr map[string]any) { tr["legacyTyp"] = []string{"", "JWT"} },
		func(tr map[string]any) { tr["quirks"] = map[string]any{"subjectType": true} },
		func(tr map[string]any) { tr["dryRun"] = true },
	}
	transmitter := func() map[string]any {
		tr := map[string]any{"issuer": pick("https://a.example", "https://b.example", "http://c.example/realms/x"),
			"audience": "revoked", "jwksUri": "https://a.example/jwks", "pushAuthorizationSecret": map[string]any{"name": "push"}}
		if rng.IntN(2) == 0 { // the receiver's token at the transmitter: polling and streams need it
			tr["bearerTokenSecret"] = map[string]any{"name": "tok"}
		}
		for range rng.IntN(5) {
			changes[rng.IntN(len(changes))](tr)
		}
		return tr
	}
	rendered, refused := 0, 0
	for i := range 64 {
		ts := []map[string]any{transmitter()}
		if rng.IntN(3) == 0 {
			ts = append(ts, transmitter())
		}
		values := map[string]any{
			"sidecar":      map[string]any{"allowAnyAudience": true},
			"cutoffClaims": pick([]string{}, []string{"uid", "email"}),
			"ingest": map[string]any{"enabled": true, "auth": map[string]any{"bearerTokenSecret": map[string]any{"name": "tok"}},
				"ssf": map[string]any{"transmitters": ts}},
		}
		data, err := yaml.Marshal(values)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := helm(t, "template", "rel", chartDir, "-f", file)
		if err != nil {
			refused++
			if !strings.Contains(err.Error(), "values don't meet the specifications of the schema") && !strings.Contains(err.Error(), "revoked: ingest.ssf.transmitters[") {
				t.Errorf("case %d: refused without the chart's own message:\n%s\n%v", i, data, err)
			}
			continue
		}
		rendered++
		m := decodeAll(t, out)
		checkIngest(t, m) // the arguments parse, the file loads
		dep, c := ingestPod(t, m)
		if cfg := loadSSF(t, m, dep.Spec.Template.Spec, c); cfg == nil || len(cfg.Transmitters) != len(ts) {
			t.Errorf("case %d: transmitters loaded %+v, want %d", i, cfg, len(ts))
		}
	}
	// Both outcomes happen: the test would say nothing otherwise.
	if rendered < 5 || refused < 5 {
		t.Errorf("%d rendered, %d refused: the generator does not reach both", rendered, refused)
	}
	t.Logf("%d rendered, %d refused", rendered, refused)
}

// TestSSFEventsSchema: the event types the schema takes under a transmitter's events are
// the ones the ssf loader takes, with the policies it allows: every name and URI the ssf
// package exports is there, and each one there loads (so a typo fails the render, not the
// ingest pod's start).
func TestSSFEventsSchema(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	type policy struct {
		Enum []string `json:"enum"`
	}
	var schema struct {
		Properties struct {
			Ingest struct {
				Properties struct {
					SSF struct {
						Properties struct {
							Transmitters struct {
								Items struct {
									Properties struct {
										Events struct {
											AdditionalProperties bool              `json:"additionalProperties"`
											Properties           map[string]policy `json:"properties"`
										} `json:"events"`
									} `json:"properties"`
								} `json:"items"`
							} `json:"transmitters"`
						} `json:"properties"`
					} `json:"ssf"`
				} `json:"properties"`
			} `json:"ingest"`
		} `json:"properties"`
	}
	if err := yaml.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	events := schema.Properties.Ingest.Properties.SSF.Properties.Transmitters.Items.Properties.Events
	if events.AdditionalProperties || len(events.Properties) == 0 {
		t.Fatalf("events: additionalProperties %v, %d names", events.AdditionalProperties, len(events.Properties))
	}
	for _, uri := range append(slices.Clone(ssf.RevocationEvents), ssf.Verification, ssf.StreamUpdated) {
		for _, name := range []string{uri, uri[strings.LastIndex(uri, "/")+1:]} {
			if _, ok := events.Properties[name]; !ok {
				t.Errorf("the schema refuses event type %s, which ssf takes", name)
			}
		}
	}
	const transmitter = "transmitters:\n- {issuer: https://a.example, audience: r, jwks_uri: https://a.example/jwks, push_authorization_file: /p, events: {%q: %s}}\n"
	for name, p := range events.Properties {
		for _, policy := range []string{"revoke", "dry-run", "ignore"} {
			_, err := ssf.ParseConfig([]byte(fmt.Sprintf(transmitter, name, policy)))
			if allowed := slices.Contains(p.Enum, policy); allowed != (err == nil) {
				t.Errorf("events %s: %s: the schema allows it %v, ssf: %v", name, policy, allowed, err)
			}
		}
	}
}
