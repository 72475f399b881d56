package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/revoked-dev/revoked/internal/testsupport"
)

// A region's mirror, end to end through revokectl: created from the region's server,
// fed by the hub over the leaf node, shown by stream info with its lag and activity,
// and reported cut off (status 1) while the leaf link is down.
func TestStreamInitMirror(t *testing.T) {
	r := testsupport.StartRegions(t)
	hubURL, regionURL := "--nats-url="+r.Hub.URL(), "--nats-url="+r.Leaf.URL()
	cli(t, "", "stream", "init", hubURL).want(t, exitOK)

	if h := cli(t, "", "stream", "init", "--help").want(t, exitOK); !strings.Contains(h.stdout, "--mirror-of DOMAIN") || !strings.Contains(h.stdout, "--origin-stream NAME") {
		t.Errorf("help lacks the mirror flags:\n%s", h.stdout)
	}
	out := cli(t, "", "stream", "init", "--mirror-of", "hub", regionURL).want(t, exitOK).stdout
	for _, s := range []string{`mirror REVOCATIONS created in JetStream domain "region-a": a copy of stream REVOCATIONS in domain hub`, "max age 24h10m0s", "--stream REVOCATIONS", "it hears from its origin"} {
		if !strings.Contains(out, s) {
			t.Errorf("mirror init lacks %q:\n%s", s, out)
		}
	}
	if out := cli(t, "", "stream", "init", "--mirror-of", "hub", "--max-token-lifetime", "12h", regionURL).want(t, exitOK).stdout; !strings.Contains(out, "mirror REVOCATIONS updated") || !strings.Contains(out, "max age 12h10m0s") {
		t.Errorf("second mirror init said %q", out)
	}

	// Published in the region, the revocation crosses the leaf node to the hub's
	// stream, and comes back through the mirror.
	cli(t, "", "stream", "init", "--mirror-of", "hub", regionURL).want(t, exitOK)
	cli(t, "", "revoke", "jti", "from-the-region", "--exp", "+1h", regionURL).want(t, exitOK)
	var info result
	testsupport.Until(t, 10*time.Second, "the event in the mirror", func() bool {
		info = cli(t, "", "stream", "info", regionURL)
		return info.code == exitOK && strings.Contains(info.stdout, "messages          1")
	})
	for _, s := range []string{"subjects          (none: a mirror takes no publishes)", "mirror of         REVOCATIONS in JetStream domain hub", "mirror lag        0 events", "mirror active     ", "duplicate window  none (a mirror: its origin deduplicates)"} {
		if !strings.Contains(info.stdout, s) {
			t.Errorf("mirror info lacks %q:\n%s", s, info.stdout)
		}
	}
	var s streamSummary
	if err := json.Unmarshal([]byte(cli(t, "", "stream", "info", "--json", regionURL).want(t, exitOK).stdout), &s); err != nil {
		t.Fatal(err)
	}
	if s.Mirror == nil || s.Mirror.Origin != "REVOCATIONS" || s.Mirror.Domain != "hub" || s.Mirror.ActiveSeconds < 0 || s.Messages != 1 {
		t.Errorf("json mirror info %+v (mirror %+v)", s, s.Mirror)
	}
	if hub := cli(t, "", "stream", "info", hubURL).want(t, exitOK); strings.Contains(hub.stdout, "mirror") {
		t.Errorf("the hub's stream shown as a mirror:\n%s", hub.stdout)
	}

	r.Link.Partition()
	testsupport.Until(t, 15*time.Second, "stream info failing on the cut-off mirror", func() bool {
		info = cli(t, "", "stream", "info", regionURL)
		return info.code == exitFailed
	})
	if !strings.Contains(info.stderr, "cut off from its origin REVOCATIONS: it has not heard from its origin for") || !strings.Contains(info.stderr, "stale") {
		t.Errorf("cut-off info said %q", info.stderr)
	}
	r.Link.Heal()
	r.WaitLinked(t)
	testsupport.Until(t, 15*time.Second, "stream info passing again", func() bool {
		return cli(t, "", "stream", "info", regionURL).code == exitOK
	})

	// stream init without --mirror-of (the chart's hook, a habit) must not turn the
	// region's mirror into a stream of its own.
	if e := cli(t, "", "stream", "init", regionURL).want(t, exitFailed); !strings.Contains(e.stderr, "is a mirror") || !strings.Contains(e.stderr, "--mirror-of hub") {
		t.Errorf("plain init on the mirror said %q", e.stderr)
	}
	if e := cli(t, "", "stream", "init", "--mirror-of", "region-a", regionURL).want(t, exitFailed); !strings.Contains(e.stderr, "its origin's own JetStream domain") {
		t.Errorf("init in the origin's domain said %q", e.stderr)
	}
	for _, bad := range [][]string{
		{"--mirror-of", "hub.eu"},
		{"--mirror-of", "hub", "--origin-stream", ""},
	} {
		cli(t, "", append([]string{"stream", "init", regionURL}, bad...)...).want(t, exitUsage)
	}
}
