package config

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Reloader keeps an agent's rules in step with its rules file: it reloads
// when the file changes (see Watcher) and on demand (SIGHUP), and applies
// each valid new version. A version that does not parse, or that apply
// refuses, is counted and logged, and the rules in force stay as they are.
type Reloader struct {
	path  string
	apply func(*File) error
	log   *slog.Logger

	mu      sync.Mutex // serialises loads; guards the fields below
	current *File
	seen    []byte // content of the last version tried, applied or not
	seenErr string // or the error reading it

	ok, failed atomic.Uint64
	last       atomic.Pointer[reloadResult]

	watching chan struct{} // closed once Run watches and has compared the file
}

type reloadResult struct {
	at  time.Time
	err error
}

// ReloadStats counts the reloads since the Reloader was made; the first Load
// is not one.
type ReloadStats struct {
	OK, Failed uint64
	// LastError is the error of the last failed reload, nil when the last
	// reload succeeded or none happened.
	LastError error
	// Last is when the last reload, successful or not, happened.
	Last time.Time
}

// NewReloader returns a Reloader of the rules file at path. apply receives
// each new valid version; it must either put it in force whole or return an
// error and change nothing. log may be nil.
func NewReloader(path string, apply func(*File) error, log *slog.Logger) *Reloader {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reloader{path: path, apply: apply, log: log, watching: make(chan struct{})}
}

// Load reads, parses and applies the file, for start-up. Its error is the
// caller's to report (usually fatal): there are no previous rules to keep.
func (r *Reloader) Load() (*File, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	data, err := os.ReadFile(r.path)
	if err != nil {
		return nil, err
	}
	f, err := Parse(data, r.path)
	if err == nil {
		err = r.apply(f)
	}
	if err != nil {
		return nil, err
	}
	r.current, r.seen, r.seenErr = f, data, ""
	return f, nil
}

// Current returns the rules in force: those of the last successful Load or
// reload.
func (r *Reloader) Current() *File {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.current
}

// Stats returns the reload counters.
func (r *Reloader) Stats() ReloadStats {
	s := ReloadStats{OK: r.ok.Load(), Failed: r.failed.Load()}
	if l := r.last.Load(); l != nil {
		s.LastError, s.Last = l.err, l.at
	}
	return s
}

// Reload reads the file again and applies it. Unless force is set, a
// version identical to the last one tried (applied or refused) is left
// alone and not counted, so that spurious change events cost nothing and a
// broken file is reported once. It returns whether a reload happened, and
// its error.
func (r *Reloader) Reload(force bool) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	data, err := os.ReadFile(r.path)
	if !force {
		if err != nil && err.Error() == r.seenErr {
			return false, nil
		}
		if err == nil && r.seenErr == "" && r.seen != nil && bytes.Equal(data, r.seen) {
			return false, nil
		}
	}
	r.seen, r.seenErr = data, ""
	if err != nil {
		r.seen, r.seenErr = nil, err.Error()
		return true, r.done(nil, err)
	}
	f, err := Parse(data, r.path)
	if err == nil {
		err = r.apply(f)
	}
	return true, r.done(f, err)
}

func (r *Reloader) done(f *File, err error) error {
	r.last.Store(&reloadResult{at: time.Now(), err: err})
	if err != nil {
		r.failed.Add(1)
		r.log.Error("rules not reloaded, the previous rules stay in force", "file", r.path, "err", err)
		return err
	}
	r.ok.Add(1)
	r.current = f
	r.log.Info("rules reloaded", "file", r.path, "rules", len(f.Rules))
	return nil
}

// Run reloads on every change of the file and on every value received from
// hup (the caller passes a channel given to signal.Notify for SIGHUP; a
// signal forces a reload even of unchanged content). It returns nil when ctx
// is done, or the error of the file watch. Run may be called once.
//
// Changes made after Load and before the watch is in place are caught: Run
// compares the file once the watch is installed.
func (r *Reloader) Run(ctx context.Context, hup <-chan os.Signal) error {
	w, err := NewWatcher(r.path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changed := make(chan struct{}, 1)
	watchErr := make(chan error, 1)
	go func() {
		watchErr <- w.Run(ctx, func() {
			select {
			case changed <- struct{}{}:
			default: // a reload is already due
			}
		})
	}()
	_, _ = r.Reload(false)
	close(r.watching)
	for {
		select {
		case <-ctx.Done():
			<-watchErr
			return nil
		case err := <-watchErr:
			return err
		case <-changed:
			_, _ = r.Reload(false)
		case <-hup:
			_, _ = r.Reload(true)
		}
	}
}
