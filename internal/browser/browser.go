package browser

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// ErrNoChromium says that no Chromium is installed (Debian: chromium).
var ErrNoChromium = errors.New("chromium is not installed (Debian package chromium): the page is not rendered")

// Find returns the path of Chromium, or ErrNoChromium.
func Find() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", ErrNoChromium
}

// DumpDOM renders url and returns the DOM once the page has loaded and its
// fetches have ended. start runs the command (exec.Cmd.Start, or one that
// starts it inside a network namespace); the browser gets a profile of its
// own in a temporary directory, and no network but what url needs.
func DumpDOM(ctx context.Context, bin, url string, start func(*exec.Cmd) error) (string, error) {
	dir, err := os.MkdirTemp("", "shadowtee-browser-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--disable-dev-shm-usage", "--user-data-dir="+dir,
		// Virtual time runs until nothing is pending (the page's fetch
		// included), up to this budget.
		"--virtual-time-budget=20000",
		"--dump-dom", url)
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_CACHE_HOME="+dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if start == nil {
		start = (*exec.Cmd).Start
	}
	if err := start(cmd); err != nil {
		return "", err
	}
	if err := cmd.Wait(); err != nil {
		return "", fmt.Errorf("chromium: %w\n%s", err, lastLines(stderr.String(), 20))
	}
	return stdout.String(), nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
