package config

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long a Watcher waits after the last event before it
// reports a change: an editor's save or a ConfigMap update is several file
// system events in a row, and one reload is enough.
const DefaultDebounce = 100 * time.Millisecond

// Watcher reports when a file may have changed.
//
// It watches the file's directory, not the file: editors save by renaming a
// new file over the old one, and a Kubernetes ConfigMap volume exposes
// "rules.yaml -> ..data/rules.yaml" and updates by swapping the "..data"
// symlink, so the file's own inode never changes. Events for the file's
// name, and for names starting with ".." (the ConfigMap's), count. When the
// file is a symlink into another directory, that directory is watched too,
// and the link is followed again after each change.
//
// A reported change is only a hint: the content may be the same, and the
// caller is expected to read the file and compare.
type Watcher struct {
	path, dir string
	fw        *fsnotify.Watcher
	debounce  time.Duration
	target    string // directory of the resolved file, when outside dir
}

// NewWatcher starts watching path. The directory of path must exist; the
// file need not (it is reported when it appears). Events are collected from
// now on, and reported by Run.
func NewWatcher(path string) (*Watcher, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	w := &Watcher{path: abs, dir: filepath.Dir(abs), fw: fw, debounce: DefaultDebounce}
	if err := fw.Add(w.dir); err != nil {
		fw.Close()
		return nil, fmt.Errorf("watch %s: %w", w.dir, err)
	}
	w.follow()
	return w, nil
}

// Watch calls onChange, from the calling goroutine, each time the file at
// path may have changed, until ctx is done (then it returns nil) or the
// watch fails.
func Watch(ctx context.Context, path string, onChange func()) error {
	w, err := NewWatcher(path)
	if err != nil {
		return err
	}
	return w.Run(ctx, onChange)
}

// Run calls onChange, from the calling goroutine, once the events of a
// change have settled for the debounce interval; events that arrive during
// onChange are reported by a later call. It returns nil when ctx is done,
// or an error when the watch fails or the directory is removed. It closes
// the Watcher when it returns.
func (w *Watcher) Run(ctx context.Context, onChange func()) error {
	defer w.fw.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.fw.Events:
			if !ok {
				return errors.New("watch: closed")
			}
			if ev.Name == w.dir && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				return fmt.Errorf("watch %s: the directory was removed", w.dir)
			}
			if w.relevant(ev) {
				timer.Reset(w.debounce)
			}
		case err, ok := <-w.fw.Errors:
			if !ok {
				return errors.New("watch: closed")
			}
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				return fmt.Errorf("watch %s: %w", w.dir, err)
			}
			// Events were lost: any of them may have been ours.
			timer.Reset(w.debounce)
		case <-timer.C:
			w.follow()
			onChange()
		}
	}
}

// Close stops watching. Run closes the Watcher itself; Close is for a
// Watcher that is never run.
func (w *Watcher) Close() error { return w.fw.Close() }

// relevant reports whether ev may change what reading the file returns.
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	name := filepath.Clean(ev.Name)
	switch {
	case name == w.path:
		return true
	case filepath.Dir(name) == w.dir:
		return strings.HasPrefix(filepath.Base(name), "..")
	case w.target != "" && filepath.Dir(name) == w.target:
		return true
	}
	return false
}

// follow watches the directory the file's symlinks lead to, when that is
// not the file's own directory (or a ConfigMap's "..data" below it).
func (w *Watcher) follow() {
	target := ""
	if real, err := filepath.EvalSymlinks(w.path); err == nil {
		if d := filepath.Dir(real); d != w.dir && !strings.HasPrefix(d, w.dir+string(filepath.Separator)) {
			target = d
		}
	}
	if target == w.target {
		return
	}
	if w.target != "" {
		_ = w.fw.Remove(w.target)
	}
	w.target = ""
	if target != "" && w.fw.Add(target) == nil {
		w.target = target
	}
}
