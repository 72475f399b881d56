package sidecar

import (
	"context"
	"io"

	"github.com/revoked-dev/revoked/internal/flags"
)

// Run runs `revoked`, the sidecar, with args (after the program name) until ctx ends,
// and returns the exit status: 0 after a clean shutdown (or --help), 1 when it cannot
// start or stop cleanly, 2 for a bad command line. The dev banner goes to stdout, the
// logs and errors to stderr.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	set, err := ParseSettings(args)
	if err != nil {
		return flags.Exit("revoked", err, stdout, stderr)
	}
	log := set.Log.Logger(stderr)
	s, err := Start(ctx, set, log)
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	if set.Dev {
		s.PrintDevBanner(stdout)
	}
	<-ctx.Done()
	log.Info("shutting down", "timeout", set.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), set.ShutdownTimeout)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}
