// Command loadgen drives one revoked sidecar with Envoy-shaped ext_authz CheckRequests
// over real gRPC and checks every answer. See BENCHMARKS.md.
package main

import "os"

func main() { os.Exit(run(os.Args[1:])) }
