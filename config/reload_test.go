package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rulesNamed returns a valid rules file whose single rule has the given name.
func rulesNamed(name string) string {
	return fmt.Sprintf("rules:\n  - name: %s\n    match: {ports: [8080]}\n    shadow: {url: http://s}\n", name)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or five seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// applied records what the Reloader applied.
type applied struct {
	mu     sync.Mutex
	names  []string
	refuse string // a rule name that apply refuses
}

func (a *applied) apply(f *File) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if f.Rules[0].Name == a.refuse {
		return fmt.Errorf("rule %s refused", a.refuse)
	}
	a.names = append(a.names, f.Rules[0].Name)
	return nil
}

func (a *applied) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.names)
}

func (a *applied) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.names) == 0 {
		return ""
	}
	return a.names[len(a.names)-1]
}

// startReloader loads path and runs a Reloader on it until the test ends.
func startReloader(t *testing.T, path string) (*Reloader, *applied, chan os.Signal) {
	t.Helper()
	a := &applied{}
	r := NewReloader(path, a.apply, nil)
	if _, err := r.Load(); err != nil {
		t.Fatal(err)
	}
	hup := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, hup) }()
	select {
	case <-r.watching:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r, a, hup
}

func TestReloadPlainWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, rulesNamed("one"))
	r, a, _ := startReloader(t, path)
	writeFile(t, path, rulesNamed("two"))
	waitFor(t, "rule two", func() bool { return r.Stats().OK == 1 })
	if a.last() != "two" {
		t.Errorf("applied %q", a.last())
	}
	if s := r.Stats(); s.OK != 1 || s.Failed != 0 || s.LastError != nil || s.Last.IsZero() {
		t.Errorf("Stats = %+v", s)
	}
	if r.Current().Rules[0].Name != "two" {
		t.Errorf("Current = %+v", r.Current())
	}
}

func TestReloadRenameOver(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.yaml")
	writeFile(t, path, rulesNamed("one"))
	_, a, _ := startReloader(t, path)
	// An editor's atomic save: a new file renamed over the old one.
	tmp := filepath.Join(dir, ".rules.yaml.swp")
	writeFile(t, tmp, rulesNamed("two"))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "rule two", func() bool { return a.last() == "two" })
}

// configMapDir lays out a directory the way the kubelet writes a ConfigMap
// volume, and returns a function that updates it the same way.
func configMapDir(t *testing.T, content string) (path string, update func(string)) {
	t.Helper()
	dir := t.TempDir()
	n := 0
	write := func(content string) string {
		n++
		ts := fmt.Sprintf("..2026_01_01_00_00_%02d.%09d", n, n)
		if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, ts, "rules.yaml"), content)
		return ts
	}
	ts := write(content)
	if err := os.Symlink(ts, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "rules.yaml"), filepath.Join(dir, "rules.yaml")); err != nil {
		t.Fatal(err)
	}
	update = func(content string) {
		old, err := os.Readlink(filepath.Join(dir, "..data"))
		if err != nil {
			t.Fatal(err)
		}
		ts := write(content)
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(ts, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "rules.yaml"), update
}

func TestReloadConfigMapSwap(t *testing.T) {
	path, update := configMapDir(t, rulesNamed("one"))
	r, a, _ := startReloader(t, path)
	update(rulesNamed("two"))
	waitFor(t, "rule two", func() bool { return a.last() == "two" })
	update(rulesNamed("three"))
	waitFor(t, "rule three", func() bool { return r.Stats().OK == 2 })
	if s := r.Stats(); a.last() != "three" || s.Failed != 0 {
		t.Errorf("Stats = %+v", s)
	}
}

func TestReloadInvalidKeepsRules(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, rulesNamed("one"))
	r, a, _ := startReloader(t, path)

	writeFile(t, path, strings.Replace(rulesNamed("two"), "8080", "80800", 1))
	waitFor(t, "a failed reload", func() bool { return r.Stats().Failed == 1 })
	s := r.Stats()
	if s.LastError == nil || !strings.Contains(s.LastError.Error(), "rules.yaml:3: rule \"two\": port 80800 is outside 1..65535") {
		t.Errorf("LastError = %v", s.LastError)
	}
	if a.last() != "one" || r.Current().Rules[0].Name != "one" {
		t.Errorf("the old rules are gone: applied %q, current %+v", a.last(), r.Current())
	}

	// A version that apply refuses is a failure too.
	a.mu.Lock()
	a.refuse = "three"
	a.mu.Unlock()
	writeFile(t, path, rulesNamed("three"))
	waitFor(t, "a refused reload", func() bool { return r.Stats().Failed == 2 })
	if r.Current().Rules[0].Name != "one" {
		t.Errorf("Current = %+v", r.Current())
	}

	writeFile(t, path, rulesNamed("four"))
	waitFor(t, "rule four", func() bool { return r.Stats().OK == 1 })
	if s := r.Stats(); a.last() != "four" || s.Failed != 2 || s.LastError != nil {
		t.Errorf("Stats = %+v", s)
	}
}

func TestReloadDeletedAndRecreated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, rulesNamed("one"))
	r, a, _ := startReloader(t, path)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failed read", func() bool { return r.Stats().Failed == 1 })
	if r.Current().Rules[0].Name != "one" {
		t.Errorf("Current = %+v", r.Current())
	}
	writeFile(t, path, rulesNamed("two"))
	waitFor(t, "rule two", func() bool { return a.last() == "two" })
}

func TestReloadSIGHUP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, rulesNamed("one"))
	r, a, hup := startReloader(t, path)
	// Unchanged content is applied again on SIGHUP, and only then.
	hup <- syscall.SIGHUP
	waitFor(t, "the forced reload", func() bool { return r.Stats().OK == 1 })
	if a.count() != 2 || a.last() != "one" {
		t.Errorf("applied %d versions, the last %q", a.count(), a.last())
	}
	if changed, err := r.Reload(false); changed || err != nil {
		t.Errorf("Reload of unchanged content: %v, %v", changed, err)
	}
}

func TestReloadCatchesChangesBeforeRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, rulesNamed("one"))
	a := &applied{}
	r := NewReloader(path, a.apply, nil)
	if _, err := r.Load(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, rulesNamed("two")) // before any watch exists
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, nil) }()
	waitFor(t, "rule two", func() bool { return a.last() == "two" })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestLoadFailureIsReturned(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, "rules: []\n")
	r := NewReloader(path, (&applied{}).apply, nil)
	if _, err := r.Load(); err == nil || err.Error() != path+":1: no rules (add at least one rule under rules:, "+exampleRule+")" {
		t.Fatalf("Load: %v", err)
	}
	if r.Current() != nil {
		t.Error("Current after a failed Load")
	}
}
