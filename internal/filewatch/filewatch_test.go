package filewatch

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// counter returns an onChange that counts its calls, and the count.
func counter() (func(), func() int64) {
	var n atomic.Int64
	return func() { n.Add(1) }, n.Load
}

// kubeSecret lays out a Secret volume as the kubelet does: the file is a symlink into
// ..data, itself a symlink to a timestamped directory. It returns the file's path and
// a function that swaps in new content the way an update does.
func kubeSecret(t *testing.T, content string) (string, func(string)) {
	t.Helper()
	dir := t.TempDir()
	version := 0
	publish := func(content string) {
		version++
		ts := filepath.Join(dir, "..2026_12_01_08_00_0"+string(rune('0'+version)))
		if err := os.Mkdir(ts, 0o700); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(ts, "token"), content)
		old, _ := os.Readlink(filepath.Join(dir, "..data"))
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil { // atomic swap
			t.Fatal(err)
		}
		if old != "" {
			if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(content)
	if err := os.Symlink(filepath.Join("..data", "token"), filepath.Join(dir, "token")); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "token"), publish
}

// A Kubernetes Secret update (the ..data symlink swapped to a new directory) is seen,
// even when the new file has the same size and mtime as the old: it is another file.
func TestKubernetesSecretSwap(t *testing.T) {
	path, publish := kubeSecret(t, "secret-one-aaaaaaaa")
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	onChange, calls := counter()
	var w Watcher
	w.Add(onChange, path)
	w.Check()
	if calls() != 0 {
		t.Fatalf("no change, %d calls", calls())
	}
	publish("secret-two-bbbbbbbb")
	if err := os.Chtimes(path, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
	w.Check()
	if calls() != 1 {
		t.Fatalf("after the swap, %d calls, want 1", calls())
	}
	w.Check()
	if calls() != 1 {
		t.Fatalf("a second poll without change called again: %d", calls())
	}
	publish("secret-two-bbbbbbbb") // the same content again: the kubelet's resync
	w.Check()
	if calls() != 1 {
		t.Fatalf("the same content counted as a change: %d", calls())
	}
}

// A write in place that keeps the size, in the same mtime tick as the last read, is
// seen (the hash is taken again while the mtime is that recent); a touch is no change.
func TestSameSizeWriteInTheSameTick(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	write(t, path, "aaaaaaaa")
	st, _ := os.Stat(path)
	onChange, calls := counter()
	var w Watcher
	w.Add(onChange, path)
	write(t, path, "bbbbbbbb")
	if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	w.Check()
	if calls() != 1 {
		t.Fatalf("same-size write in the same tick: %d calls, want 1", calls())
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	w.Check()
	if calls() != 1 {
		t.Fatalf("a touch counted as a change: %d", calls())
	}
}

// A file missing for a moment (replaced by a remove and a write) is no change until it
// is back with other content; a file missing when added is reported when it appears.
func TestMissingFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	write(t, path, "one")
	late := filepath.Join(dir, "late")
	onChange, calls := counter()
	onLate, lateCalls := counter()
	var w Watcher
	w.Add(onChange, path)
	w.Add(onLate, late)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	w.Check()
	write(t, path, "one")
	w.Check()
	if calls() != 0 {
		t.Fatalf("removed and written back unchanged: %d calls", calls())
	}
	write(t, path, "two")
	write(t, late, "here")
	w.Check()
	if calls() != 1 || lateCalls() != 1 {
		t.Fatalf("calls %d, late %d, want 1 and 1", calls(), lateCalls())
	}
}

// A group (a certificate and its key) calls its function once for a change of either.
func TestGroup(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write(t, cert, "cert-1")
	write(t, key, "key-1")
	onChange, calls := counter()
	var w Watcher
	w.Add(onChange, cert, key)
	write(t, cert, "cert-2")
	write(t, key, "key-22")
	w.Check()
	if calls() != 1 {
		t.Fatalf("%d calls, want 1", calls())
	}
	write(t, key, "key-333")
	w.Check()
	if calls() != 2 {
		t.Fatalf("%d calls, want 2", calls())
	}
}

// Watch polls on its own until the context ends.
func TestWatch(t *testing.T) {
	path, publish := kubeSecret(t, "v1")
	ctx, cancel := context.WithCancel(context.Background())
	changed := make(chan struct{}, 10)
	Watch(ctx, 5*time.Millisecond, func() { changed <- struct{}{} }, path)
	publish("v2")
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("the swap was not seen")
	}
	cancel()
}
