package authz

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/revoked-dev/revoked/internal/envoyreq"
)

// A cutoff scoped to one client (CONTRACT section 2, client_id) denies, through gRPC
// Check, the user's tokens of that client, named by client_id or by azp, and allows
// the same user's tokens of other clients: cached tokens included.
func TestClientScopedCutoff(t *testing.T) {
	e := newTestEnv(t)
	tokens := map[string]string{
		"web":          e.ed.Token("alice", time.Hour, jwt.MapClaims{"client_id": "web"}),
		"azp web":      e.rsa.Token("alice", time.Hour, jwt.MapClaims{"azp": "web"}),
		"mobile, azp":  e.ed.Token("alice", time.Hour, jwt.MapClaims{"client_id": "mobile", "azp": "web"}),
		"mobile":       e.ed.Token("alice", time.Hour, jwt.MapClaims{"client_id": "mobile"}),
		"no client":    e.ed.Token("alice", time.Hour, nil),
		"other user":   e.ed.Token("bob", time.Hour, jwt.MapClaims{"client_id": "web"}),
		"issued after": e.ed.Token("alice", time.Hour, jwt.MapClaims{"client_id": "web", "iat": time.Now().Add(3 * time.Second).Unix()}),
	}
	for name, tok := range tokens { // every token cached before the cutoff arrives
		if resp := e.check(t, envoyreq.Bearer(tok)); code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
			t.Fatalf("%s: denied before any cutoff: %v", name, resp.GetStatus())
		}
	}
	e.set.AddCutoff(e.set.ClientCutoffKey(testIss, "sub", "alice", "web"), time.Now().Add(time.Second).Unix())
	revoked := map[string]bool{"web": true, "azp web": true, "mobile, azp": true}
	for name, tok := range tokens {
		resp := e.check(t, envoyreq.Bearer(tok))
		if got := resp.GetStatus().GetMessage() == "revoked_cutoff"; got != revoked[name] {
			t.Errorf("%s: revoked %v, want %v (%v)", name, got, revoked[name], resp.GetStatus())
		}
	}
}
