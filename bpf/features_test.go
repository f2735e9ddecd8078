package bpf

import (
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
)

// The root tests need root and, each, some kernel feature. The helpers here
// skip a test with the reason when what it needs is missing, so that the
// suite says what an older kernel lacks instead of failing there.

// requireRoot skips the test unless it runs as root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading BPF programs needs root (CAP_BPF, CAP_NET_ADMIN)")
	}
}

// requireProgramFeatures skips the test unless the kernel has what Load
// needs: ring buffer maps (Linux 5.8) and memory-mappable arrays (5.5).
func requireProgramFeatures(t *testing.T) {
	t.Helper()
	requireRoot(t)
	skipIfNotSupported(t, features.HaveMapType(ebpf.RingBuf), "BPF ring buffer maps (Linux 5.8)")
	skipIfNotSupported(t, features.HaveMapFlag(features.BPF_F_MMAPABLE), "memory-mappable BPF arrays (Linux 5.5)")
}

// skipIfNotSupported skips the test if err says that the kernel lacks a
// feature, naming it; other errors fail the test.
func skipIfNotSupported(t *testing.T, err error, what string) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("the kernel lacks %s: %v", what, err)
	}
	t.Fatalf("probe for %s: %v", what, err)
}

// skipUnlessAttachable skips the test if err from Attach says that the
// attach mode needs a newer kernel: TCX links need Linux 6.6.
func skipUnlessAttachable(t *testing.T, mode AttachMode, err error) {
	t.Helper()
	if mode == AttachTCX && errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("the kernel lacks TCX links (Linux 6.6): %v", err)
	}
}

// requireBlocking skips the test if the reader cannot block on the ring
// (its descriptor could not join Go's netpoller) and only polls.
func requireBlocking(t *testing.T, rd *Reader) {
	t.Helper()
	if !rd.Blocking() {
		t.Skip("the ring buffer's descriptor cannot be waited on with epoll here: the reader only polls")
	}
}
