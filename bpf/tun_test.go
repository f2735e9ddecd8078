package bpf

import (
	"encoding/binary"
	"os"
	"testing"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

type tunDevice struct {
	Name  string
	Index int
	file  *os.File
}

// newTun creates a TUN device (no link-layer header), removed at cleanup.
func newTun(t *testing.T) *tunDevice {
	t.Helper()
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no TUN support: %v", err)
	}
	var req [unix.IFNAMSIZ + 64]byte
	name := "stee" + randomSuffix()
	copy(req[:], name)
	binary.NativeEndian.PutUint16(req[unix.IFNAMSIZ:], unix.IFF_TUN|unix.IFF_NO_PI)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req[0]))); errno != 0 {
		f.Close()
		t.Skipf("TUNSETIFF: %v", errno)
	}
	t.Cleanup(func() { f.Close() })
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	return &tunDevice{Name: name, Index: l.Attrs().Index, file: f}
}

func randomSuffix() string {
	var b [3]byte
	_, _ = unix.Getrandom(b[:], 0)
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 6)
	for _, c := range b {
		out = append(out, hex[c>>4], hex[c&15])
	}
	return string(out)
}
