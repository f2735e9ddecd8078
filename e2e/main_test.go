// Package e2e runs the shadowtee binary the way a user would: attached to
// the gateway of a client / gateway / shadow topology of network
// namespaces, with real clients and servers. It needs root; without it the
// tests skip.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binary is the shadowtee executable built for the tests.
var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("e2e: skipped, network namespaces and BPF need root")
		return m.Run() // every test skips on its own
	}
	dir, err := os.MkdirTemp("", "shadowtee-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "shadowtee")
	build := exec.Command("go", "build", "-o", binary, "..")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build shadowtee:", err)
		return 1
	}
	return m.Run()
}

func requireRoot(t *testing.T) {
	t.Helper()
	if binary == "" {
		t.Skip("needs root: network namespaces and BPF")
	}
}
