package main

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// heapFigures reads the Go runtime's own memory figures from the sidecar's /metrics:
// what its heap holds, what the next collection waits for, and what the runtime has
// from the OS, to tell the replica and the caches from GC headroom and the binary.
func heapFigures(admin string) string {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + admin + "/metrics")
	if err != nil {
		return "no /metrics: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	want := []struct{ name, label string }{
		{"go_memstats_heap_alloc_bytes", "heap_alloc"},
		{"go_memstats_next_gc_bytes", "next_gc"},
		{"go_memstats_heap_inuse_bytes", "heap_inuse"},
		{"go_memstats_heap_released_bytes", "heap_released"},
		{"go_memstats_sys_bytes", "go_sys"},
		{"go_gc_duration_seconds_count", "gc_cycles"},
		{`go_gc_duration_seconds{quantile="1"}`, "gc_pause_max"},
	}
	var out []string
	for _, w := range want {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, w.name+" "); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				switch {
				case strings.HasPrefix(w.label, "gc_cycles"):
					out = append(out, fmt.Sprintf("%s=%.0f", w.label, f))
				case strings.HasPrefix(w.label, "gc_pause"):
					out = append(out, fmt.Sprintf("%s=%.0fµs", w.label, f*1e6))
				default:
					out = append(out, fmt.Sprintf("%s=%.1fMiB", w.label, f/(1<<20)))
				}
			}
		}
	}
	return strings.Join(out, " ")
}
