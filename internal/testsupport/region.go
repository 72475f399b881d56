package testsupport

import (
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Region domains of StartRegions.
const (
	HubDomain    = "hub"
	RegionDomain = "region-a"
)

// Regions are two embedded JetStream servers in two JetStream domains, as a fleet in two
// regions runs them: the hub (domain "hub", with a leaf node listener) and a region's
// server (domain "region-a"), a leaf node of the hub. The leaf link goes through Link,
// a Proxy: Link.Partition cuts the region off the hub, Link.Heal joins them again.
type Regions struct {
	Hub, Leaf *NATS
	Link      *Proxy
}

// StartRegions starts the hub and the region's server and waits for the leaf link.
// Nothing is created in them.
func StartRegions(t testing.TB) *Regions {
	t.Helper()
	ho := NATSOptions(t)
	ho.ServerName, ho.JetStreamDomain = "hub", HubDomain
	// NoAdvertise: the hub would otherwise tell the leaf its own address, and the leaf
	// would reconnect to it directly, around Link.
	ho.LeafNode.Host, ho.LeafNode.Port, ho.LeafNode.NoAdvertise = "127.0.0.1", -1, true
	r := &Regions{Hub: StartNATSWith(t, ho)}
	r.Link = StartProxy(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(ho.LeafNode.Port)))

	lo := NATSOptions(t)
	lo.ServerName, lo.JetStreamDomain = "region-a", RegionDomain
	lo.LeafNode.ReconnectInterval = 100 * time.Millisecond
	lo.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: []*url.URL{{Scheme: "nats-leaf", Host: r.Link.Addr()}}}}
	r.Leaf = StartNATSWith(t, lo)
	r.WaitLinked(t)
	return r
}

// WaitLinked waits until the leaf link is up on both sides.
func (r *Regions) WaitLinked(t testing.TB) {
	t.Helper()
	Until(t, 10*time.Second, "the region's leaf node linked to the hub", func() bool {
		return r.Hub.NumLeafNodes() == 1 && r.Leaf.NumLeafNodes() == 1
	})
}
