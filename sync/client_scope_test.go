package sync

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/internal/testsupport"
)

// A cutoff with client_id (CONTRACT section 2) revokes the user's tokens of that client
// only: the logout at one app of issue 12, with an IdP whose access tokens carry no sid.
// It holds through replay, live follow and a snapshot load, and never widens to the
// user's tokens of other clients.

// scopedCutoff is a cutoff on sub, restricted to client when it is not empty.
func scopedCutoff(sub, client string, nb int64) string {
	if client == "" {
		return fmt.Sprintf(`{"type":"cutoff","claim":"sub","value":%q,"not_before":%d,"source":"test"}`, sub, nb)
	}
	return fmt.Sprintf(`{"type":"cutoff","claim":"sub","value":%q,"not_before":%d,"client_id":%q,"source":"backchannel-logout"}`, sub, nb, client)
}

// clientToken is a token of sub issued at iat by client clientID (azp when set), with
// its claims as authz reads them.
type clientToken struct {
	sub, clientID, azp string
}

func (c clientToken) revoked(set *blocklist.Set, iat int64) bool {
	claims := []blocklist.Claim{{Name: "sub", Value: c.sub}, {Name: "client_id", Value: c.clientID}}
	if c.azp != "" && c.azp != c.clientID {
		claims = append(claims, blocklist.Claim{Name: "client_id", Value: c.azp})
	}
	q := set.NewQuery("https://idp", "", iat, claims, c.clientID, c.azp)
	return set.Check(&q) == blocklist.RevokedCutoff
}

func TestClientScopedCutoffEndToEnd(t *testing.T) {
	f := newFixture(t)
	now := time.Now().Unix()
	iat := now - 60 // every token below was issued before the cutoffs
	f.publish(t, "revocations.cutoff", scopedCutoff("alice", "web", now), "")
	f.publish(t, "revocations.cutoff", scopedCutoff("carol", "", now), "")
	f.start(t)
	testsupport.Until(t, 10*time.Second, "ready", f.r.Ready)

	// expect checks what every replica below must answer.
	expect := func(t *testing.T, set *blocklist.Set, stage string, want map[clientToken]bool) {
		t.Helper()
		for tok, revoked := range want {
			if got := tok.revoked(set, iat); got != revoked {
				t.Errorf("%s: token %+v revoked = %v, want %v", stage, tok, got, revoked)
			}
		}
	}
	replayed := map[clientToken]bool{
		{sub: "alice", clientID: "web"}:                true,
		{sub: "alice", azp: "web"}:                     true, // the client named by azp
		{sub: "alice", clientID: "mobile", azp: "web"}: true,
		{sub: "alice", clientID: "mobile"}:             false, // same user, another client
		{sub: "alice"}:                                 false, // a token naming no client
		{sub: "bob", clientID: "web"}:                  false,
		{sub: "carol", clientID: "mobile"}:             true, // unscoped: every client
	}
	expect(t, f.set, "replay", replayed)

	// Live: a logout of dave at mobile.
	f.publish(t, "revocations.cutoff", scopedCutoff("dave", "mobile", now), "")
	last := f.publish(t, "revocations.cutoff", scopedCutoff("alice", "web", now-30), "") // older: changes nothing
	testsupport.Until(t, 10*time.Second, "live events applied", func() bool { return f.r.LastSequence() == last })
	live := map[clientToken]bool{
		{sub: "dave", clientID: "mobile"}: true,
		{sub: "dave", clientID: "web"}:    false,
	}
	expect(t, f.set, "live", live)
	if q := (clientToken{sub: "alice", clientID: "web"}); !q.revoked(f.set, now-10) {
		t.Error("live: an older scoped cutoff lowered the newer one")
	}

	// Snapshot: the scope survives the round trip through a signed snapshot.
	ctx := context.Background()
	snap, err := BuildSnapshot(ctx, f.js, Options{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	scoped := map[string]string{}
	for _, c := range snap.Cutoffs {
		scoped[c.Value] = c.ClientID
	}
	if len(snap.Cutoffs) != 3 || scoped["alice"] != "web" || scoped["dave"] != "mobile" || scoped["carol"] != "" {
		t.Fatalf("snapshot cutoffs %+v, want alice@web, dave@mobile, carol", snap.Cutoffs)
	}
	if err := WriteSnapshot(ctx, f.js, "SNAPS", snap, testSnapKey); err != nil {
		t.Fatal(err)
	}
	r, set, _, stop := startReplicaWith(t, f.srv, Options{SnapshotBucket: "SNAPS"}, testSnapPub)
	t.Cleanup(stop)
	if snapLoads(r, "ok") != 1 || r.LastSequence() != last {
		t.Fatalf("snapshot not loaded (last sequence %d, want %d)", r.LastSequence(), last)
	}
	expect(t, set, "snapshot", replayed)
	expect(t, set, "snapshot", live)
}

// A REVSNAP2 snapshot cannot tell a scoped cutoff from an unscoped one: it is refused as
// an old format (a full replay), never loaded with its scopes widened.
func TestSnapshotV2IsRefused(t *testing.T) {
	s := &Snapshot{Stream: "S", Subjects: "revocations.>", Sequence: 1,
		Cutoffs: []SnapshotCutoff{{Claim: "sub", Value: "u", ClientID: "web", NotBefore: 7}}}
	b, err := s.MarshalSigned(testSnapKey)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseSnapshot(b, []ed25519.PublicKey{testSnapPub})
	if err != nil || len(back.Cutoffs) != 1 || back.Cutoffs[0] != s.Cutoffs[0] {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	copy(b, v2SnapshotMagic)
	if _, err := ParseSnapshot(b, []ed25519.PublicKey{testSnapPub}); !errors.Is(err, ErrOldSnapshot) {
		t.Fatalf("REVSNAP2: %v, want ErrOldSnapshot", err)
	}
}
