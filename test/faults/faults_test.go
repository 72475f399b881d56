package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/testsupport"
)

// publishFor lets the publisher run for d and checks that events are still acked.
func publishFor(t *testing.T, p *publisher, d time.Duration) {
	t.Helper()
	before := p.stats().acked
	hold(d)
	p.waitAcked(before + 1)
}

// TestNATSKilled: the NATS server is killed with SIGKILL while events flow, and
// restarted on the same port and store. Proves: acked events survive a crash of the
// server (file store), sidecars reconnect and resume their ordered consumers from the
// last sequence they applied, and the publisher's retries with Nats-Msg-Id double
// nothing.
func TestNATSKilled(t *testing.T) {
	tm := scenarioTiming()
	start := time.Now()
	e := newEnv(t, 1)
	scs := e.sidecars(3, sidecarOpts{})
	p := e.publisher(nil)
	for round := range tm.rounds {
		publishFor(t, p, tm.phase)
		t.Logf("round %d: SIGKILL nats-server (%d acked so far)", round+1, p.stats().acked)
		e.nats.nodes[0].kill()
		hold(tm.fault)
		e.nats.nodes[0].start()
	}
	publishFor(t, p, tm.phase)
	p.finish()
	e.converge(start, p, scs...)
}

// TestSidecarKilled: a sidecar is killed with SIGKILL while events flow and started
// again. Proves: a sidecar that restarts replays the whole stream and converges with
// the others; the others are not disturbed.
func TestSidecarKilled(t *testing.T) {
	tm := scenarioTiming()
	start := time.Now()
	e := newEnv(t, 1)
	scs := e.sidecars(3, sidecarOpts{})
	p := e.publisher(nil)
	for round := range tm.rounds {
		publishFor(t, p, tm.phase)
		victim := scs[round%len(scs)]
		t.Logf("round %d: SIGKILL sidecar %s (%d acked so far)", round+1, victim.name, p.stats().acked)
		victim.kill()
		hold(tm.fault)
		victim.start()
		victim.waitReady()
	}
	publishFor(t, p, tm.phase)
	p.finish()
	e.converge(start, p, scs...)
}

// TestSidecarPartitioned: two sidecars are cut off from NATS (through the test's own
// TCP proxy) for longer than the reconnect wait, then reconnected. Both have
// --max-staleness 1s; b serves from its replica past it, c denies. Proves: a cut-off
// sidecar keeps answering from its replica, reports revoked_sync_connected 0 and a
// growing revoked_sync_staleness_seconds; the stale policy acts past the limit in both
// of its settings; after the cut, the sidecars catch up and converge.
func TestSidecarPartitioned(t *testing.T) {
	tm := scenarioTiming()
	start := time.Now()
	e := newEnv(t, 1)
	a := e.sidecars(1, sidecarOpts{})[0]
	proxyB, proxyC := testsupport.StartProxy(t, e.nats.nodes[0].addr()), testsupport.StartProxy(t, e.nats.nodes[0].addr())
	b := startSidecar(t, "b-serve", e, sidecarOpts{natsURL: proxyB.URL(), maxStaleness: time.Second, stalePolicy: "serve"})
	c := startSidecar(t, "c-deny", e, sidecarOpts{natsURL: proxyC.URL(), maxStaleness: time.Second, stalePolicy: "deny"})
	b.waitReady()
	c.waitReady()
	p := e.publisher(nil)
	cut := max(tm.fault, 3*time.Second) // well past the reconnect wait (250 ms) and the staleness limit
	for round := range tm.rounds {
		publishFor(t, p, tm.phase)
		// A token revoked before the cut, which b and c hold.
		acked := p.ackedEvents()
		revoked := acked[len(acked)-1]
		for _, s := range []*sidecar{b, c} {
			testsupport.WaitFor(t, 30*time.Second, s.name+" applied the last event before the cut", func() error {
				if reason, err := s.check(context.Background(), revoked.token); err != nil || reason != "revoked_jti" {
					return fmt.Errorf("%q %v", reason, err)
				}
				return nil
			})
		}
		fresh := e.issuer.Token("fresh-user", time.Hour, nil)
		addSecret(fresh)
		t.Logf("round %d: partition b and c from NATS for %s (%d acked so far)", round+1, cut, p.stats().acked)
		cutAt := time.Now()
		proxyB.Partition()
		proxyC.Partition()
		for _, s := range []*sidecar{b, c} {
			testsupport.WaitFor(t, 20*time.Second, s.name+" revoked_sync_connected 0", func() error {
				return metricIs(s, "revoked_sync_connected", 0)
			})
		}
		// Staleness grows past the limit.
		var first float64
		testsupport.WaitFor(t, 20*time.Second, "b staleness past 1s", func() error {
			v, err := b.metric("revoked_sync_staleness_seconds")
			if err == nil && v <= 1 {
				err = fmt.Errorf("staleness %.2f", v)
			}
			first = v
			return err
		})
		testsupport.WaitFor(t, 20*time.Second, "b staleness growing", func() error {
			v, err := b.metric("revoked_sync_staleness_seconds")
			if err == nil && v < first+0.3 {
				err = fmt.Errorf("staleness %.2f after %.2f", v, first)
			}
			return err
		})
		// serve: b answers from its replica, the revoked token still denied.
		for tok, want := range map[string]string{revoked.token: "revoked_jti", fresh: "ok"} {
			if reason, err := b.check(context.Background(), tok); err != nil || reason != want {
				t.Errorf("b (serve) while stale: %q, %v; want %q", reason, err, want)
			}
		}
		// deny: c refuses every check as stale, and says it is not ready.
		testsupport.WaitFor(t, 10*time.Second, "c denies as stale", func() error {
			for _, tok := range []string{revoked.token, fresh} {
				if reason, err := c.check(context.Background(), tok); err != nil || reason != "stale" {
					return fmt.Errorf("%q %v", reason, err)
				}
			}
			if code, _, err := c.get("/readyz"); err != nil || code != 503 {
				return fmt.Errorf("readyz %d %v", code, err)
			}
			return nil
		})
		if a, err := a.check(context.Background(), fresh); err != nil || a != "ok" {
			t.Errorf("a (connected) answered %q, %v for a fresh token", a, err)
		}
		hold(cut - time.Since(cutAt))
		proxyB.Heal()
		proxyC.Heal()
		for _, s := range []*sidecar{b, c} {
			testsupport.WaitFor(t, 30*time.Second, s.name+" reconnected", func() error {
				if err := metricIs(s, "revoked_sync_connected", 1); err != nil {
					return err
				}
				return metricIs(s, "revoked_sync_staleness_seconds", 0)
			})
		}
		testsupport.WaitFor(t, 10*time.Second, "c serves again", func() error {
			if reason, err := c.check(context.Background(), fresh); err != nil || reason != "ok" {
				return fmt.Errorf("%q %v", reason, err)
			}
			return nil
		})
	}
	publishFor(t, p, tm.phase)
	p.finish()
	e.converge(start, p, a, b, c)
}

func metricIs(s *sidecar, series string, want float64) error {
	v, err := s.metric(series)
	if err == nil && v != want {
		err = fmt.Errorf("%s = %g, want %g", series, v, want)
	}
	return err
}

// TestLostAck: the publisher's acks are lost (the test's proxy drops what the server
// sends, while what the publisher sends still arrives) for longer than the ack wait.
// Proves: the publisher retries with the same Nats-Msg-Id, the stream dedupes the
// retries (the late ack says duplicate), and the stream holds each event once: no
// double, no loss.
func TestLostAck(t *testing.T) {
	tm := scenarioTiming()
	start := time.Now()
	e := newEnv(t, 1)
	scs := e.sidecars(2, sidecarOpts{})
	pp := testsupport.StartProxy(t, e.nats.nodes[0].addr())
	js, err := jetstream.New(e.nats.connect(pp.URL(), "faults-publisher-proxied"))
	if err != nil {
		t.Fatal(err)
	}
	p := e.publisher(js)
	for round := range tm.rounds {
		publishFor(t, p, tm.phase)
		t.Logf("round %d: acks lost for %s (%d acked so far)", round+1, tm.fault+time.Second, p.stats().acked)
		pp.DropReplies(true)
		hold(tm.fault + time.Second) // more than the publisher's ack wait (1s)
		pp.DropReplies(false)
	}
	publishFor(t, p, tm.phase)
	p.finish()
	f := e.converge(start, p, scs...)
	if f.dupAcks < tm.rounds {
		t.Errorf("%d duplicate acks, want at least %d: no retry met an event already stored", f.dupAcks, tm.rounds)
	}
}

// TestClusterNodeKilled: a three-node NATS cluster holds the stream with 3 replicas;
// the stream's leader is killed with SIGKILL while events flow (in the long form it
// comes back and the next leader is killed too). Proves: acked events survive the loss
// of a node; sidecars and the publisher fail over to the other nodes and converge.
func TestClusterNodeKilled(t *testing.T) {
	tm := scenarioTiming()
	start := time.Now()
	e := newEnv(t, 3)
	scs := e.sidecars(2, sidecarOpts{})
	p := e.publisher(nil)
	for round := range tm.rounds {
		publishFor(t, p, tm.phase)
		leader := e.streamLeader()
		t.Logf("round %d: SIGKILL stream leader %s (%d acked so far)", round+1, leader.name, p.stats().acked)
		leader.kill()
		publishFor(t, p, tm.fault)
		if round < tm.rounds-1 {
			leader.start()
			// The node catches up before the next fault, so that a quorum stays.
			testsupport.WaitFor(t, 60*time.Second, "stream replicas current", e.replicasCurrent)
		}
	}
	publishFor(t, p, tm.phase)
	p.finish()
	e.converge(start, p, scs...)
}

// streamLeader returns the node leading the stream.
func (e *env) streamLeader() *natsNode {
	e.t.Helper()
	var leader *natsNode
	testsupport.WaitFor(e.t, 30*time.Second, "stream leader", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		s, err := e.js.Stream(ctx, event.DefaultStream)
		if err != nil {
			return err
		}
		if cl := s.CachedInfo().Cluster; cl != nil {
			for _, n := range e.nats.nodes {
				if n.name == cl.Leader && n.cmd != nil {
					leader = n
					return nil
				}
			}
		}
		return errNotYet
	})
	return leader
}

// replicasCurrent reports nil once the stream has a leader and every replica is current.
func (e *env) replicasCurrent() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, event.DefaultStream)
	if err != nil {
		return err
	}
	cl := s.CachedInfo().Cluster
	if cl == nil || cl.Leader == "" || len(cl.Replicas) != 2 {
		return errNotYet
	}
	for _, r := range cl.Replicas {
		if !r.Current || r.Offline {
			return fmt.Errorf("replica %s current=%v offline=%v", r.Name, r.Current, r.Offline)
		}
	}
	return nil
}
