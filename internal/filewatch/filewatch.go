// Package filewatch notices when files change, by polling: the JWKS file, the ingest
// API's secrets and certificate, and the Shared Signals push authorizations are read
// again through it, so that a rotated Kubernetes Secret or ConfigMap takes effect
// without a restart.
//
// It polls rather than using inotify (fsnotify): Kubernetes updates a mounted Secret by
// writing a new timestamped directory and swapping the ..data symlink to it, so the
// file a watch was put on never changes (its directory is removed), events come for
// paths other than the one watched, and a watch on the symlink itself is lost on the
// first swap. A poll that follows the symlinks sees the new file every time.
package filewatch

import (
	"context"
	"crypto/sha256"
	"os"
	"sync"
	"time"
)

// Watcher polls groups of files; each group has a function called when one of its
// files has changed content. Add before Run; Check polls once.
type Watcher struct {
	polling sync.Mutex // one Check at a time
	mu      sync.Mutex
	groups  []*group
}

type group struct {
	onChange func()
	files    []*file
}

// file is what the last poll saw of one path (symlinks followed).
type file struct {
	path    string
	info    os.FileInfo // nil until its content was read once
	sum     [sha256.Size]byte
	checked time.Time // when sum was taken
}

// Add watches paths as one group: onChange runs (on the watcher's goroutine) after a
// poll that found the content of any of them changed. The files' state is taken now:
// read them after Add, so that a change in between is seen by the next poll.
func (w *Watcher) Add(onChange func(), paths ...string) {
	g := &group{onChange: onChange}
	for _, p := range paths {
		f := &file{path: p}
		f.changed() // the state to compare with; a file missing now appears later
		g.files = append(g.files, f)
	}
	w.mu.Lock()
	w.groups = append(w.groups, g)
	w.mu.Unlock()
}

// Check polls every file once and calls the onChange of each group that changed.
func (w *Watcher) Check() {
	w.polling.Lock()
	defer w.polling.Unlock()
	w.mu.Lock()
	groups := append([]*group(nil), w.groups...)
	w.mu.Unlock()
	for _, g := range groups {
		changed := false
		for _, f := range g.files {
			if f.changed() {
				changed = true
			}
		}
		if changed {
			g.onChange()
		}
	}
}

// Run polls every interval until ctx ends.
func (w *Watcher) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.Check()
	}
}

// Watch calls onChange each time the content of one of paths changes, polling every
// interval until ctx ends: a Watcher of one group, on a goroutine of its own.
func Watch(ctx context.Context, every time.Duration, onChange func(), paths ...string) {
	var w Watcher
	w.Add(onChange, paths...)
	go w.Run(ctx, every)
}

// racyWindow is how close to a file's mtime a hash may have been taken and still miss
// a later write in the same mtime tick (filesystems keep whole seconds, some two).
const racyWindow = 2 * time.Second

// changed stats the file (following symlinks) and reports whether its content
// differs from what the last call saw. The content is read and hashed only when the
// file is not the same one (a symlink swap gives a new inode), its size or mtime moved,
// or it was hashed within racyWindow of its mtime (a same-size write in the same tick
// leaves both as they were: git's "racily clean" entries). A touch alone, or a file
// rewritten with the same content, is no change. A missing or unreadable file is no
// change either (a swap in progress): the content it had stays the one compared.
func (f *file) changed() bool {
	info, err := os.Stat(f.path)
	if err != nil {
		return false
	}
	if f.info != nil && os.SameFile(f.info, info) && info.Size() == f.info.Size() &&
		info.ModTime().Equal(f.info.ModTime()) && f.checked.Sub(info.ModTime()) > racyWindow {
		return false
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return false
	}
	sum := sha256.Sum256(b)
	moved := f.info == nil || sum != f.sum
	f.info, f.sum, f.checked = info, sum, time.Now()
	return moved
}
