//go:build !idp

package idp

import "testing"

// TestIdentityProviders says why the suite did not run: it needs Hydra and node.
func TestIdentityProviders(t *testing.T) {
	t.Skip("tests against Ory Hydra and oidc-provider are opt-in: make test-idp (builds Hydra, runs npm ci, then go test -tags idp ./test/idp/)")
}
