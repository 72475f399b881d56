package benchkit

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/event"
)

// FillJTI publishes n jti revocations of iss (each expiring in two hours) in batches,
// and returns the stream sequence of the last one.
func FillJTI(ctx context.Context, js jetstream.JetStream, iss string, n int) (uint64, error) {
	const batch = 50_000
	exp := time.Now().Add(2 * time.Hour).Unix()
	var last uint64
	for done := 0; done < n; done += batch {
		payloads := make([][]byte, min(batch, n-done))
		for i := range payloads {
			payloads[i] = JTIEvent(iss, RandomID(), exp)
		}
		var err error
		if last, err = PublishAll(ctx, js, event.Subject(event.DefaultSubjectPrefix, event.TypeJTI), payloads, 1000); err != nil {
			return last, err
		}
	}
	return last, nil
}

// RSS is a process's resident set size in bytes (0 if unknown).
func RSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// RSSAnon is the anonymous part of a process's RSS in bytes (its heap, stacks and
// runtime memory): RSS less the pages of its binary and other files, which are clean,
// shared and reclaimable under memory pressure.
func RSSAnon(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// CPUTime is a process's user+system CPU time so far (Linux clock ticks, 100 Hz).
func CPUTime(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}
