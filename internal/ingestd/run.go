package ingestd

import (
	"context"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/revoked-dev/revoked/ingest"
	"github.com/revoked-dev/revoked/internal/buildinfo"
	"github.com/revoked-dev/revoked/internal/flags"
)

// Run runs `revoked ingest` with args (after the subcommand) until ctx ends, and
// returns the exit status: 0 after a shutdown (or --help, --version), 1 when it cannot
// start, 2 for a bad command line. The help goes to stdout, the logs and errors to
// stderr.
//
// When ctx ends (SIGTERM), /readyz answers 503 at once while the API keeps answering
// (every revocation still published and acknowledged) for --shutdown-delay; then it
// stops accepting and gives the requests in flight --shutdown-timeout.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	set, err := ParseSettings(args)
	if err != nil {
		return flags.Exit("revoked ingest", err, stdout, stderr)
	}
	log := set.Log.Logger(stderr)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Get().Collector())
	// The server outlives ctx (its key refresh and file reloads with it), through the
	// shutdown delay; Close ends it.
	srv, err := ingest.Start(context.WithoutCancel(ctx), &set.Config, log, reg)
	if err != nil {
		log.Error("revoked ingest cannot start", "err", err)
		return 1
	}
	<-ctx.Done()
	srv.Drain()
	log.Info("revoked ingest stopping: not ready, still serving", "delay", set.Shutdown.Delay, "timeout", set.Shutdown.Timeout)
	time.Sleep(set.Shutdown.Delay)
	log.Info("revoked ingest stopping: no new requests accepted")
	sctx, cancel := context.WithTimeout(context.Background(), set.Shutdown.Timeout)
	defer cancel()
	if err := srv.Close(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	return 0
}
