// Command revoked is the sidecar: it answers Envoy's ext_authz checks for JWTs and
// denies revoked tokens, from a local replica of the revocation stream.
//
//	revoked [flags]          the sidecar (revoked --help lists the flags)
//	revoked ingest [flags]   the HTTP ingest API for identity providers
package main

import (
	"os"

	"github.com/revoked-dev/revoked/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
