package sync

import (
	"strings"

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
