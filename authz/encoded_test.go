package authz

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/revoked-dev/revoked/internal/envoyreq"
)

// TestPreEncodedAllowOnTheWire: the allow response a cached token keeps pre-encoded
// marshals to the bytes of the response it stands for, and a client gets the same
// response on a token's first check and on a check served from the cache.
func TestPreEncodedAllowOnTheWire(t *testing.T) {
	e := newTestEnv(t)
	tok := e.ed.Token("alice", time.Hour, nil)
	d := e.a.Check("Bearer " + tok)
	if !d.Allowed() {
		t.Fatalf("denied: %v", d.Reason)
	}
	full := NewGRPCServer(e.a, "x-revoked-sub").allowResponse(d.Token)
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	got, err := proto.Marshal(preEncoded(full))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("pre-encoded response marshals to %x, want %x", got, want)
	}

	other := e.ed.Token("bob", time.Hour, nil)
	first := e.check(t, envoyreq.Bearer(other))
	cached := e.check(t, envoyreq.Bearer(other))
	if !proto.Equal(first, cached) || first.GetOkResponse() == nil || first.GetDynamicMetadata().GetFields()["jti_hash"].GetStringValue() == "" {
		t.Fatalf("first check %v, from the cache %v", first, cached)
	}
}
