package ingestd

import (
	"context"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/revoked-dev/revoked/ingest"
	"github.com/revoked-dev/revoked/internal/flags"
)

// shutdownTimeout is the time requests in flight get to finish on SIGTERM.
const shutdownTimeout = 10 * time.Second

// Run runs `revoked ingest` with args (after the subcommand) until ctx ends, and
// returns the exit status: 0 after a clean shutdown (or --help), 1 when it cannot
// start, 2 for a bad command line. The help goes to stdout, the logs and errors to
// stderr.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	set, err := ParseSettings(args)
	if err != nil {
		return flags.Exit("revoked ingest", err, stdout, stderr)
	}
	log := set.Log.Logger(stderr)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := ingest.Start(ctx, &set.Config, log, reg)
	if err != nil {
		log.Error("revoked ingest cannot start", "err", err)
		return 1
	}
	<-ctx.Done()
	log.Info("revoked ingest stopping")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Close(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	return 0
}
