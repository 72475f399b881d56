//go:build linux || darwin || freebsd || netbsd || openbsd

package blocklist

import (
	"sync/atomic"
	"syscall"
)

// liveRegions counts regions mapped and not yet unmapped, for tests.
var liveRegions atomic.Int64

// mapSlots maps size bytes of zeroed, private, anonymous memory; nil if the OS refuses
// (the caller then uses the heap).
func mapSlots(size int) []byte {
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil
	}
	liveRegions.Add(1)
	return b
}

func unmapSlots(b []byte) {
	if b != nil {
		// Only a region mapSlots returned comes here, whole: munmap cannot fail on it.
		_ = syscall.Munmap(b)
		liveRegions.Add(-1)
	}
}
