package ssf_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/publish"
	"github.com/revoked-dev/revoked/ssf"
	"github.com/revoked-dev/revoked/ssf/ssftest"
	"github.com/revoked-dev/revoked/stream"
)

const audience = "https://revoked.example.com"

// spec is one transmitter of an env and the extra YAML of its entry.
type spec struct {
	tr    *ssftest.Transmitter
	extra string // YAML lines of the entry, each indented by four spaces
	auth  string // its push authorization; set by newEnv
	file  string // the push_authorization_file
	down  bool   // its keys cannot be fetched at start: newEnv does not wait for them
	jwks  string // a jwks_file to read its keys from instead of its jwks_uri
	// noBearer leaves out bearer_token_file (extra gives client_credentials instead).
	noBearer bool
}

// env is a receiver on real NATS with the stream, serving POST /ssf/events on a real
// HTTP server.
type env struct {
	t     *testing.T
	nats  *testsupport.NATS
	js    jetstream.JetStream
	rx    *ssf.Receiver
	url   string
	reg   *prometheus.Registry
	logs  *testsupport.LogBuffer
	specs []*spec
	ctx   context.Context
	stop  func() // stops the poll workers and stream management, and waits for them
}

func newEnv(t *testing.T, specs ...*spec) *env {
	t.Helper()
	ns := testsupport.StartNATS(t)
	return start(t, ns, ns.CreateStream(stream.Settings{}), specs)
}

// newEnvOnNATS is a second receiver on the stream of e: another replica.
func newEnvOnNATS(t *testing.T, e *env, specs ...*spec) *env {
	t.Helper()
	return start(t, e.nats, e.js, specs)
}

func start(t *testing.T, ns *testsupport.NATS, streamJS jetstream.JetStream, specs []*spec) *env {
	t.Helper()
	e := &env{t: t, nats: ns, js: streamJS, specs: specs}
	var handler atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler.Load().(http.Handler).ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	e.url = srv.URL + "/ssf/events"
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("transmitters:\n")
	for i, s := range specs {
		s.auth = fmt.Sprintf("Bearer push-secret-%d-%s", i, strings.Repeat("x", 16))
		keys := "jwks_uri: " + s.tr.JWKSURI()
		if s.jwks != "" {
			keys = "jwks_file: " + s.jwks
		}
		fmt.Fprintf(&b, "  - issuer: %s\n    %s\n    audience: %s\n    push_authorization_file: %s\n",
			s.tr.Issuer, keys, audience, s.pushFile(t, dir, i))
		if !s.noBearer {
			fmt.Fprintf(&b, "    bearer_token_file: %s\n", writeFile(t, dir, fmt.Sprintf("bearer-%d", i), s.tr.Bearer))
		}
		if s.extra != "" {
			b.WriteString(strings.ReplaceAll(s.extra, "PUSH_URL", e.url))
		}
	}
	cfgPath := writeFile(t, dir, "ssf.yaml", b.String())
	cfg, err := ssf.LoadConfig(cfgPath)
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	e.reg = prometheus.NewPedanticRegistry()
	e.logs = &testsupport.LogBuffer{}
	js, err := jetstream.New(ns.Connect())
	if err != nil {
		t.Fatal(err)
	}
	pub := publish.New(js, publish.Config{Stream: event.DefaultStream, AllowedClaims: []string{"uid", "email"},
		AttemptTimeout: 300 * time.Millisecond, Attempts: 2})
	ctx, cancel := context.WithCancel(context.Background())
	e.ctx = ctx
	e.rx, err = ssf.New(ctx, cfg, pub, ssf.Options{Registerer: e.reg, Log: slog.New(slog.NewTextHandler(e.logs, nil)), SecretReload: 20 * time.Millisecond})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	handler.Store(e.rx.PushHandler())
	e.rx.Start(ctx)
	e.stop = func() { cancel(); e.rx.Wait() }
	t.Cleanup(e.stop)
	for _, s := range specs {
		if s.down {
			return e
		}
	}
	testsupport.Until(t, 10*time.Second, "keys loaded", func() bool { return e.rx.Ready(ctx) == nil })
	return e
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// push sends set as s's transmitter and returns the status and the error code.
func (e *env) push(s *spec, set string) (int, string) {
	e.t.Helper()
	code, body, err := ssftest.Push(e.url, s.auth, set)
	if err != nil {
		e.t.Fatal(err)
	}
	return code, body["err"]
}

// events returns the events in the stream.
func (e *env) events() []event.Event {
	e.t.Helper()
	ctx := context.Background()
	st, err := e.js.Stream(ctx, event.DefaultStream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var evs []event.Event
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			e.t.Fatal(err)
		}
		ev, err := event.Decode(m.Data, []string{"uid", "email"})
		if err != nil {
			e.t.Fatal(err)
		}
		if ev.EventID != m.Header.Get(publish.MsgIDHeader) {
			e.t.Fatalf("event_id %q is not the Nats-Msg-Id %q", ev.EventID, m.Header.Get(publish.MsgIDHeader))
		}
		evs = append(evs, ev)
	}
	return evs
}

// metric returns the value of the first sample of name whose labels include labels.
func (e *env) metric(name string, labels map[string]string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func (s *spec) pushFile(t *testing.T, dir string, i int) string {
	if s.file == "" {
		s.file = writeFile(t, dir, fmt.Sprintf("push-%d", i), s.auth)
	}
	return s.file
}
