package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binary is the shadowtee built for these tests; imageBinary is built as
// the container image builds it; h2peer is testdata/h2peer, the gRPC
// client and servers (a module of its own: the main one needs no gRPC).
var binary, imageBinary, h2peer string

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
	// The container image's binary leaves the demo out (Dockerfile): the
	// DaemonSet's test runs that one.
	imageBinary = filepath.Join(dir, "shadowtee-image")
	for out, tags := range map[string]string{binary: "", imageBinary: "nodemo"} {
		build := exec.Command("go", "build", "-tags", tags, "-o", out, "..")
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: build shadowtee:", err)
			return 1
		}
	}
	h2peer = filepath.Join(dir, "h2peer")
	build := exec.Command("go", "build", "-o", h2peer, ".")
	build.Dir = "../testdata/h2peer"
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build testdata/h2peer:", err)
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
