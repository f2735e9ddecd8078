package config

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// runWatcher runs a Watcher on path and counts its reports.
func runWatcher(t *testing.T, path string) (calls *atomic.Int64, stop func() error) {
	t.Helper()
	w, err := NewWatcher(path)
	if err != nil {
		t.Fatal(err)
	}
	calls = new(atomic.Int64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, func() { calls.Add(1) }) }()
	var stopped bool
	var result error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			result = <-done
		}
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return calls, stop
}

func TestWatchDebounces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, "a")
	calls, stop := runWatcher(t, path)
	// A burst of writes is one change.
	for i := range 5 {
		writeFile(t, path, string(rune('b'+i)))
	}
	waitFor(t, "a report", func() bool { return calls.Load() >= 1 })
	time.Sleep(3 * DefaultDebounce)
	if n := calls.Load(); n != 1 {
		t.Errorf("%d reports for one burst", n)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestWatchIgnoresOtherFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.yaml")
	writeFile(t, path, "a")
	calls, _ := runWatcher(t, path)
	writeFile(t, filepath.Join(dir, "other.yaml"), "x")
	time.Sleep(3 * DefaultDebounce)
	if n := calls.Load(); n != 0 {
		t.Errorf("%d reports for another file", n)
	}
	writeFile(t, path, "b")
	waitFor(t, "a report", func() bool { return calls.Load() == 1 })
}

func TestWatchFollowsSymlinkElsewhere(t *testing.T) {
	real := filepath.Join(t.TempDir(), "real.yaml")
	writeFile(t, real, "a")
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.Symlink(real, path); err != nil {
		t.Fatal(err)
	}
	calls, _ := runWatcher(t, path)
	writeFile(t, real, "b")
	waitFor(t, "a report", func() bool { return calls.Load() == 1 })
}

func TestWatchFileAppears(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	calls, _ := runWatcher(t, path)
	writeFile(t, path, "a")
	waitFor(t, "a report", func() bool { return calls.Load() == 1 })
}

func TestWatchDirectoryRemoved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "conf")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := NewWatcher(filepath.Join(dir, "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background(), func() {}) }()
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run ended without an error when the directory went away")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run goes on without its directory")
	}
}

func TestWatchMissingDirectory(t *testing.T) {
	if err := Watch(context.Background(), filepath.Join(t.TempDir(), "nope", "rules.yaml"), func() {}); err == nil {
		t.Fatal("Watch of a missing directory succeeded")
	}
}
