package cli

import (
	"context"
	"os"

	"github.com/revoked-dev/revoked/ingest"
)

// ingestMain runs `revoked ingest`, the HTTP ingest API for identity providers.
func ingestMain(ctx context.Context, args []string) int {
	return ingest.Main(ctx, args, os.Stdout, os.Stderr)
}
