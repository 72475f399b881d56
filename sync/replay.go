package sync

import (
	"runtime/debug"
	"strings"
	gosync "sync"

	"github.com/nats-io/nats.go/jetstream"
)

// What a replay costs is mostly per message, on both sides of the connection; the
// choices here keep that cost down without changing what the replica applies.

// consumerFilter is the subject filter of the replica's consumer: none when the
// stream holds only revocations (its subjects all lie under the prefix, or it is a
// mirror of the revocation stream, as stream init --mirror-of creates). A filter there
// selects nothing less, but nats-server then matches every message's subject against
// it as it reads its store (a quarter of its CPU in a full replay) and counts pending
// messages the slow way. handle applies only the prefix's subjects either way: a
// stream given other subjects while a consumer without filter follows it still has
// only revocations applied.
func consumerFilter(cfg jetstream.StreamConfig, prefix string) []string {
	filter := []string{prefix + ".>"}
	var subjects []string
	switch {
	case len(cfg.Sources) > 0:
		return filter // other streams' messages may be mixed in
	case cfg.Mirror != nil:
		// A mirror holds what its origin holds, or the part its filters select.
		if cfg.Mirror.FilterSubject != "" {
			subjects = append(subjects, cfg.Mirror.FilterSubject)
		}
		for _, t := range cfg.Mirror.SubjectTransforms {
			if t.Destination != "" {
				return filter // subjects rewritten
			}
			subjects = append(subjects, t.Source)
		}
	default:
		if len(cfg.Subjects) == 0 {
			return filter
		}
		subjects = cfg.Subjects
	}
	for _, s := range subjects {
		if !underPrefix(s, prefix) {
			return filter
		}
	}
	return nil
}

// underPrefix reports whether subject (literal or with wildcards) names only subjects
// that prefix.> matches: the prefix's tokens, then at least one more.
func underPrefix(subject, prefix string) bool {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	return ok && rest != ""
}

// revocationSubject reports whether a message's subject is one prefix.> matches.
func (r *Replica) revocationSubject(subject string) bool {
	rest, ok := strings.CutPrefix(subject, r.opts.SubjectPrefix)
	return ok && len(rest) > 1 && rest[0] == '.'
}

// replayGCPercent is the least GC percent a replay runs with. A replay allocates a
// message's worth of garbage per event around a live heap of a few MiB (the blocklist's
// tables live outside the Go heap): at the chart's serving percent (50) the collector
// would start a cycle every MiB or so, hundreds over 1M events. At 100 the replay of
// 1M events still took 5.2 s and 4.8 CPU-s against 4.1 s and 3.6 CPU-s at 400
// (bench/coldstart), for a peak heap of some 15 MiB, returned once ready.
const replayGCPercent = 400

// replayGC is the process's GC setting while replicas replay: the first replica to
// start a replay raises the percent, the last to be ready restores it.
var replayGC struct {
	gosync.Mutex
	replaying int
	saved     int // the percent to restore
}

// beginReplayGC raises the GC percent to replayGCPercent for a first replay when the
// process runs below it (GOGC), and returns the function that ends that replay: it
// restores the setting once no replica replays any more, and returns the replay's
// garbage to the OS at once instead of over the next minutes. Calling it again does
// nothing.
func beginReplayGC() (end func()) {
	replayGC.Lock()
	defer replayGC.Unlock()
	if replayGC.replaying == 0 {
		replayGC.saved = debug.SetGCPercent(replayGCPercent)
		if replayGC.saved < 0 || replayGC.saved >= replayGCPercent {
			debug.SetGCPercent(replayGC.saved) // GC off, or already loose enough
		}
	}
	replayGC.replaying++
	var once gosync.Once
	return func() {
		once.Do(func() {
			replayGC.Lock()
			defer replayGC.Unlock()
			if replayGC.replaying--; replayGC.replaying == 0 && replayGC.saved >= 0 && replayGC.saved < replayGCPercent {
				debug.SetGCPercent(replayGC.saved)
				go debug.FreeOSMemory()
			}
		})
	}
}
