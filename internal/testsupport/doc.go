// Package testsupport is what the tests share, and nothing shipped imports:
//
//   - StartNATS runs a real NATS server with JetStream inside a test process, on a random
//     port, and can restart it on the same port and store to test reconnects;
//   - NewCA makes a throwaway certificate authority for tests of TLS and mutual TLS: a
//     CA, and server or client certificates it signs, as PEM files and in memory;
//   - LogBuffer is a log sink a server's logging goroutines may write to while the test
//     reads it;
//   - Until waits for a condition to hold, checking it every 10 ms, instead of sleeping
//     for a guessed time.
package testsupport
