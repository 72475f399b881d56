// Command revokectl publishes JWT revocations to the revoked stream (NATS JetStream),
// manages that stream, and checks tokens against a revoked sidecar as Envoy would.
// Run 'revokectl --help' for its commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
