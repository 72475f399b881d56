package testsupport

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/stream"
)

// NATS is an embedded nats-server with JetStream.
type NATS struct {
	t    testing.TB
	opts *server.Options
	*server.Server
}

// NATSOptions returns the options StartNATS uses: loopback, a random port, JetStream on a
// temporary store. Tests may change them (users, TLS) before StartNATSWith.
func NATSOptions(t testing.TB) *server.Options {
	return &server.Options{
		Host:               "127.0.0.1",
		Port:               -1,
		NoLog:              true,
		NoSigs:             true,
		JetStream:          true,
		StoreDir:           t.TempDir(),
		MaxPayload:         8 << 20,
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  1 << 30,
	}
}

// StartNATS runs a server with NATSOptions(t); it is shut down when the test ends.
func StartNATS(t testing.TB) *NATS { return StartNATSWith(t, NATSOptions(t)) }

// StartNATSWith runs a server with opts.
func StartNATSWith(t testing.TB, opts *server.Options) *NATS {
	t.Helper()
	s := &NATS{t: t, opts: opts}
	s.start()
	t.Cleanup(func() { s.Shutdown() })
	return s
}

func (s *NATS) start() {
	s.t.Helper()
	ns, err := server.NewServer(s.opts)
	if err != nil {
		s.t.Fatalf("nats server: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		s.t.Fatal("nats server not ready")
	}
	// Later restarts reuse the port the first start was given.
	s.opts.Port = ns.Addr().(*net.TCPAddr).Port
	s.Server = ns
}

// Restart stops the server and starts it again on the same port and store directory.
func (s *NATS) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Stop shuts the server down and waits until it is gone.
func (s *NATS) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
}

// URL is the client URL.
func (s *NATS) URL() string { return s.ClientURL() }

// Connect opens a client connection closed when the test ends.
func (s *NATS) Connect(opts ...nats.Option) *nats.Conn {
	s.t.Helper()
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		s.t.Fatalf("nats connect: %v", err)
	}
	s.t.Cleanup(nc.Close)
	return nc
}

// CreateStream creates the revocation stream with the contract's defaults.
func (s *NATS) CreateStream(settings stream.Settings) jetstream.JetStream {
	s.t.Helper()
	js, err := jetstream.New(s.Connect())
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Right after a delete of the same stream the server may still be removing its
	// store ("error creating store for stream"): retried, as an operator would.
	WaitFor(s.t, 5*time.Second, "the stream created", func() error {
		_, err := stream.Ensure(ctx, js, settings)
		return err
	})
	return js
}
