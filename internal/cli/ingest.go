package cli

import (
	"context"
	"fmt"
	"os"
)

// ingestMain runs `revoked ingest`. It is replaced by the ingest package's Main.
func ingestMain(_ context.Context, _ []string) int {
	fmt.Fprintln(os.Stderr, "revoked ingest: not built yet")
	return 2
}
