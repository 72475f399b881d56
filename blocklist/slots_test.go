package blocklist

import (
	"runtime"
	"testing"
	"time"
)

// TestSlotMemoryFollowsEntries: the slots' memory grows with the entries, a purge that
// empties the set gives all of it back, and entries survive every resize on the way.
func TestSlotMemoryFollowsEntries(t *testing.T) {
	s := New()
	if got := s.SlotBytes(); got != 0 {
		t.Fatalf("empty set holds %d slot bytes", got)
	}
	const n = 200_000
	for i := range n {
		s.AddJTI(s.JTIKey("iss", benchJTI(i)), 1_000+int64(i%2))
	}
	s.AddCutoff(s.CutoffKey("iss", "sub", "u"), 1_000)
	got := s.SlotBytes()
	if min, max := int64(n*slotBytes), int64(n*slotBytes)*2; got < min || got > max {
		t.Fatalf("%d entries hold %d slot bytes, want %d – %d", n, got, min, max)
	}
	for i := range n {
		if !s.HasJTI(s.JTIKey("iss", benchJTI(i))) {
			t.Fatalf("entry %d lost while the table grew", i)
		}
	}
	// Half expire: the shards shrink and keep the other half.
	if jti, cutoff := s.Purge(1_001, Retention{}); jti != n/2 || cutoff != 1 {
		t.Fatalf("purged %d jti, %d cutoffs; want %d, 1", jti, cutoff, n/2)
	}
	if after := s.SlotBytes(); after >= got {
		t.Fatalf("slot bytes %d after purging half, %d before", after, got)
	}
	for i := 1; i < n; i += 2 {
		if !s.HasJTI(s.JTIKey("iss", benchJTI(i))) {
			t.Fatalf("entry %d lost by the purge", i)
		}
	}
	if jti, _ := s.Purge(1_002, Retention{}); jti != n/2 {
		t.Fatalf("purged %d, want %d", jti, n/2)
	}
	if got := s.SlotBytes(); got != 0 {
		t.Fatalf("an emptied set still holds %d slot bytes", got)
	}
	// Usable again after being emptied.
	s.AddJTI(s.JTIKey("iss", "again"), 5_000)
	if !s.HasJTI(s.JTIKey("iss", "again")) {
		t.Fatal("entry added after a full purge is missing")
	}
}

// TestUnreachableSetReleasesItsSlots: a Set nobody holds gives its mapped slots back
// to the OS, as its heap memory would be collected.
func TestUnreachableSetReleasesItsSlots(t *testing.T) {
	probe := mapSlots(1)
	if probe == nil {
		t.Skip("slots are on the heap on this OS")
	}
	unmapSlots(probe)
	before := liveRegions.Load()
	func() {
		s := New()
		for i := range 100_000 {
			s.AddJTI(s.JTIKey("iss", benchJTI(i)), benchExp)
		}
		if liveRegions.Load() <= before {
			t.Fatal("a filled set mapped no memory")
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for liveRegions.Load() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d regions still mapped after the set became unreachable", liveRegions.Load()-before)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
