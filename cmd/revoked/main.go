// Command revoked is the sidecar: it answers Envoy's ext_authz checks for JWTs and
// denies revoked tokens, from a local replica of the revocation stream.
//
//	revoked [flags]          the sidecar (revoked --help lists the flags)
//	revoked ingest [flags]   the HTTP ingest API for identity providers
//	revoked --version        the version, VCS revision and Go version
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/revoked-dev/revoked/internal/ingestd"
	"github.com/revoked-dev/revoked/internal/sidecar"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run dispatches to the subcommand, which runs until SIGTERM or an interrupt, and
// returns its exit status.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// The first signal starts the shutdown (--shutdown-delay, then the drain); a
	// second one ends the process at once, as signals do by default.
	go func() { <-ctx.Done(); stop() }()
	if len(args) > 0 && args[0] == "ingest" {
		return ingestd.Run(ctx, args[1:], stdout, stderr)
	}
	return sidecar.Run(ctx, args, stdout, stderr)
}
