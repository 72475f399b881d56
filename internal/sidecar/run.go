package sidecar

import (
	"context"
	"io"
	"time"

	"github.com/revoked-dev/revoked/internal/flags"
)

// Run runs `revoked`, the sidecar, with args (after the program name) until ctx ends,
// and returns the exit status: 0 after a clean shutdown (or --help, --version), 1 when
// it cannot start or stop cleanly, 2 for a bad command line. The dev banner goes to
// stdout, the logs and errors to stderr.
//
// When ctx ends (SIGTERM), the sidecar reports not ready at once but keeps answering
// checks, and its replica keeps following the stream, for --shutdown-delay; then it
// stops accepting and gives the checks in flight --shutdown-timeout.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	set, err := ParseSettings(args)
	if err != nil {
		return flags.Exit("revoked", err, stdout, stderr)
	}
	log := set.Log.Logger(stderr)
	// The sidecar outlives ctx: its replica must keep applying revocations for as
	// long as it answers checks, the shutdown delay included. Shutdown ends it.
	s, err := Start(context.WithoutCancel(ctx), set, log)
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	if set.Dev {
		s.PrintDevBanner(stdout)
	}
	<-ctx.Done()
	s.Drain()
	log.Info("shutting down: not ready, still answering checks", "delay", set.Shutdown.Delay, "timeout", set.Shutdown.Timeout)
	time.Sleep(set.Shutdown.Delay)
	log.Info("shutting down: no new checks accepted")
	sctx, cancel := context.WithTimeout(context.Background(), set.Shutdown.Timeout)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}
