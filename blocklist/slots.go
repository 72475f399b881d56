package blocklist

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Slot memory lives outside the Go heap where the OS allows it (slots_mmap.go).
//
// The slots hold no pointers, so the collector never scans them; but on the heap they
// still count toward its goal, and GOGC's headroom and the scavenger's retention are
// paid on them: at 1M entries (27 MiB of slots) and GOGC=25 that is about 10 MiB of
// RSS spent on garbage the blocklist never makes. Mapped apart, they cost their own
// size and nothing more, GOGC sizes only the request path's heap, and a shard that
// grows or is purged gives its old slots back to the OS at once.
//
// Every use of a shard's slots happens under its lock, and a shard is reached only
// through its Set, so a table's memory is unmapped only by a resize or purge under that
// lock, or by the cleanup that runs once the Set is unreachable.

// slotBytes is what one slot takes: a key and a value.
const slotBytes = int(unsafe.Sizeof(Key{})) + int(unsafe.Sizeof(uint32(0)))

// tableMemory records the mapped region of each shard of a table: the cleanup's
// argument, kept apart from the Set so that it does not keep the Set alive.
type tableMemory struct {
	regions [numShards][]byte
	bytes   atomic.Int64 // bytes of the table's slots, mapped or (where mapping is not available) on the heap
}

// freeAll unmaps every region; it runs once the Set is unreachable.
func (m *tableMemory) freeAll() {
	for i := range m.regions {
		unmapSlots(m.regions[i])
		m.regions[i] = nil
	}
	m.bytes.Store(0)
}

// initMemory gives the shards of t their memory record and frees it with owner.
func (t *table) initMemory(owner *Set) {
	t.mem = new(tableMemory)
	for i := range t.shards {
		t.shards[i].mem = &t.mem.regions[i]
		t.shards[i].bytes = &t.mem.bytes
	}
	runtime.AddCleanup(owner, (*tableMemory).freeAll, t.mem)
}

// swapSlots gives the shard n empty slots (none when n is 0) and returns its old ones,
// which the caller copies from and then hands to release. The caller holds the lock.
func (sh *shard) swapSlots(n int) (keys []Key, vals []uint32, region []byte) {
	keys, vals, region = sh.keys, sh.vals, *sh.mem
	sh.keys, sh.vals, *sh.mem = nil, nil, nil
	if n > 0 {
		sh.keys, sh.vals, *sh.mem = allocSlots(n)
		sh.bytes.Add(int64(n * slotBytes))
	}
	return keys, vals, region
}

// release frees the n old slots swapSlots returned, once nothing reads them.
func (sh *shard) release(n int, region []byte) {
	sh.bytes.Add(-int64(n * slotBytes))
	unmapSlots(region)
}

// allocSlots returns n zeroed slots: keys and values in one mapped region, or on the
// heap (region nil) where mapping is not available or fails.
func allocSlots(n int) (keys []Key, vals []uint32, region []byte) {
	region = mapSlots(n * slotBytes)
	if region == nil {
		return make([]Key, n), make([]uint32, n), nil
	}
	// Keys first: the region is page-aligned, so both arrays are aligned.
	keys = unsafe.Slice((*Key)(unsafe.Pointer(unsafe.SliceData(region))), n)
	vals = unsafe.Slice((*uint32)(unsafe.Pointer(&region[n*int(unsafe.Sizeof(Key{}))])), n)
	return keys, vals, region
}
