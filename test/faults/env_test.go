package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
)

// env is one scenario's world: NATS, the stream, an issuer whose JWKS the sidecars
// trust, and a publisher connection.
type env struct {
	t      *testing.T
	dir    string
	nats   *natsCluster
	issuer *devissuer.Issuer
	jwks   string
	nc     *nats.Conn
	js     jetstream.JetStream
}

// timing are the durations of a scenario's phases: short in plain go test, longer with
// REVOKED_FAULTS=long.
type timing struct {
	rate   int           // events per second
	phase  time.Duration // publishing before and after each fault
	fault  time.Duration // how long a fault is held
	rounds int           // faults injected per scenario
}

func scenarioTiming() timing {
	if long {
		return timing{rate: 200, phase: 5 * time.Second, fault: 8 * time.Second, rounds: 3}
	}
	return timing{rate: 100, phase: 1500 * time.Millisecond, fault: 2 * time.Second, rounds: 1}
}

func newEnv(t *testing.T, nodes int) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	t.Cleanup(e.keepLogsOnFailure)
	var err error
	if e.issuer, err = devissuer.New("EdDSA", "https://idp.faults.test", "faults-api"); err != nil {
		t.Fatal(err)
	}
	e.jwks = filepath.Join(e.dir, "jwks.json")
	if err := os.WriteFile(e.jwks, e.issuer.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	e.nats = startNATS(t, nodes)
	e.nc = e.nats.connect(e.nats.urls(), "faults-publisher")
	if e.js, err = jetstream.New(e.nc); err != nil {
		t.Fatal(err)
	}
	waitJetStream(t, e.js)
	testsupport.WaitFor(t, 60*time.Second, "stream created", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := stream.Ensure(ctx, e.js, stream.Settings{Replicas: nodes})
		return err
	})
	return e
}

// sidecars starts n sidecars named a, b, c... and waits until they are ready.
func (e *env) sidecars(n int, o sidecarOpts) []*sidecar {
	var out []*sidecar
	for i := range n {
		out = append(out, startSidecar(e.t, string(rune('a'+i)), e, o))
	}
	for _, s := range out {
		s.waitReady()
	}
	return out
}

// publisher starts a steady flow of events through js (the env's own by default).
func (e *env) publisher(js jetstream.JetStream) *publisher {
	if js == nil {
		js = e.js
	}
	p := newPublisher(e.t, js, e.issuer, scenarioTiming().rate)
	p.start()
	e.t.Cleanup(func() {
		select {
		case <-p.stop:
		default:
			close(p.stop)
		}
		<-p.done
	})
	return p
}

// streamState reads the stream's message count and last sequence, retrying while a
// cluster elects a leader.
func (e *env) streamState() (msgs, lastSeq uint64) {
	e.t.Helper()
	testsupport.WaitFor(e.t, 60*time.Second, "stream info", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		s, err := e.js.Stream(ctx, event.DefaultStream)
		if err != nil {
			return err
		}
		info := s.CachedInfo()
		msgs, lastSeq = info.State.Msgs, info.State.LastSeq
		return nil
	})
	return msgs, lastSeq
}

// figures are what a scenario reports.
type figures struct {
	scenario   string
	published  int
	acked      int
	streamMsgs uint64
	applied    map[string]int // per sidecar: acked events its replica holds
	lost       int            // acked events missing from some replica
	retries    int
	dupAcks    int
	duration   time.Duration
}

func (f figures) String() string {
	names := make([]string, 0, len(f.applied))
	for n := range f.applied {
		names = append(names, n)
	}
	slices.Sort(names)
	var applied []string
	for _, n := range names {
		applied = append(applied, fmt.Sprintf("%s=%d", n, f.applied[n]))
	}
	return fmt.Sprintf("FIGURES %s: published=%d acked=%d stream_msgs=%d applied[%s] lost=%d retries=%d duplicate_acks=%d duration=%s",
		f.scenario, f.published, f.acked, f.streamMsgs, strings.Join(applied, " "), f.lost, f.retries, f.dupAcks, f.duration.Round(100*time.Millisecond))
}

// converge stops nothing: call it once the publisher has finished. It checks that the
// stream holds each acked event once, that every sidecar's replica reaches the
// stream's last sequence holding exactly the acked events (its jti entries number the
// acked events, and a token of each acked event is denied as revoked), and that a
// token never revoked is still allowed. It logs the figures and returns them.
func (e *env) converge(start time.Time, p *publisher, scs ...*sidecar) figures {
	e.t.Helper()
	st := p.stats()
	acked := p.ackedEvents()
	f := figures{scenario: e.t.Name(), published: st.published, acked: len(acked),
		applied: map[string]int{}, retries: st.retries, dupAcks: st.dupAcks}
	if st.acked != st.published {
		e.t.Errorf("%d events published, %d acked: every event must end acked", st.published, st.acked)
	}
	msgs, lastSeq := e.streamState()
	f.streamMsgs = msgs
	if msgs != uint64(len(acked)) {
		e.t.Errorf("stream holds %d messages for %d acked events (a retry doubled an event, or one got lost)", msgs, len(acked))
	}
	for _, s := range scs {
		err := poll(90*time.Second, func() error {
			r, err := s.replica()
			if err != nil {
				return err
			}
			if r.LastSequence < lastSeq || r.JTIEntries != len(acked) {
				return fmt.Errorf("last_sequence %d of %d, jti_entries %d of %d (connected=%v)", r.LastSequence, lastSeq, r.JTIEntries, len(acked), r.Connected)
			}
			return nil
		})
		if err != nil {
			e.t.Errorf("sidecar %s did not converge: %v", s.name, err)
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	fresh := e.issuer.Token("never-revoked", time.Hour, nil)
	addSecret(fresh)
	for _, s := range scs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, missing := 0, 0
			for _, ev := range acked {
				reason, err := s.check(context.Background(), ev.token)
				switch {
				case err != nil:
					e.t.Errorf("sidecar %s: check: %v", s.name, err)
					return
				case reason == "revoked_jti":
					n++
				default:
					if missing++; missing <= 3 {
						e.t.Errorf("sidecar %s: acked event %s (seq %d): token answered %q, want revoked_jti", s.name, ev.id, ev.seq, reason)
					}
				}
			}
			if reason, err := s.check(context.Background(), fresh); err != nil || reason != "ok" {
				e.t.Errorf("sidecar %s: a token never revoked answered %q, %v; want ok", s.name, reason, err)
			}
			mu.Lock()
			f.applied[s.name] = n
			f.lost = max(f.lost, len(acked)-n)
			mu.Unlock()
		}()
	}
	wg.Wait()
	f.duration = time.Since(start)
	e.t.Log(f.String())
	if f.lost != 0 {
		e.t.Errorf("%d acked events lost", f.lost)
	}
	return f
}

// poll is waitFor without failing: it returns f's last error after d.
func poll(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hold keeps a fault in place for d while the publisher goes on. It is the fault's
// duration, not a wait for some state.
func hold(d time.Duration) { time.Sleep(d) }

var errNotYet = errors.New("not yet")

// keepLogsOnFailure copies the scenario's logs out of its temporary directory when it
// failed, so that they outlive the test (REVOKED_FAULTS_LOGS, default
// $TMPDIR/revoked-faults-logs).
func (e *env) keepLogsOnFailure() {
	if !e.t.Failed() {
		return
	}
	dst := os.Getenv("REVOKED_FAULTS_LOGS")
	if dst == "" {
		dst = filepath.Join(os.TempDir(), "revoked-faults-logs")
	}
	dst = filepath.Join(dst, e.t.Name())
	if err := os.MkdirAll(dst, 0o700); err != nil {
		e.t.Logf("keeping logs: %v", err)
		return
	}
	secrets.Lock()
	logs := slices.Clone(secrets.logs)
	secrets.Unlock()
	for _, l := range logs {
		if !strings.HasPrefix(l, e.dir) && !strings.HasPrefix(filepath.Dir(filepath.Dir(l)), filepath.Dir(e.dir)) {
			continue
		}
		if b, err := os.ReadFile(l); err == nil {
			_ = os.WriteFile(filepath.Join(dst, filepath.Base(l)), b, 0o600)
		}
	}
	e.t.Logf("logs kept in %s", dst)
}
