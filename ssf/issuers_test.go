package ssf_test

import (
	"net/http"
	"testing"

	"github.com/revoked-dev/revoked/ssf/ssftest"
)

// Google's RISC SETs name the issuer "https://accounts.google.com/" (in iss and in the
// subject), its tokens "https://accounts.google.com". With token_issuers listing the
// tokens' form, a subject naming the other is matched (RFC 3986 makes them one) and the
// cutoff names the tokens' iss, so that it matches them. A trailing slash after a path
// is another issuer and is refused.
func TestIssuerTrailingSlash(t *testing.T) {
	tr := ssftest.New(t, audience, ssftest.WithRSA())
	origin := tr.Server.URL
	tr.Issuer = origin + "/"
	google := &spec{tr: tr, extra: "    token_issuers: [" + origin + ", " + origin + "/realms/a]\n    legacy_typ: [\"\"]\n    quirks: {subject_in_event: true, subject_type: true}\n"}
	e := newEnv(t, google)
	if code, errc := e.push(google, tr.Sign(tr.GoogleRISC(ssftest.SessionsRevoked, "1234567890"), map[string]any{"typ": nil})); code != http.StatusAccepted {
		t.Fatalf("google: %d %s", code, errc)
	}
	evs := e.events()
	if len(evs) != 1 || evs[0].Iss != origin || evs[0].Value != "1234567890" {
		t.Fatalf("stream %+v, want a cutoff with iss %s", evs, origin)
	}
	c := tr.Claims(ssftest.CredentialChange, nil)
	c["sub_id"] = ssftest.IssSub(origin+"/realms/a/", "u1")
	if code, errc := e.push(google, tr.Sign(c, nil)); code != http.StatusBadRequest || errc != "invalid_request" {
		t.Fatalf("an issuer with a path and a trailing slash: %d %s, want 400 invalid_request", code, errc)
	}
}
