package bpf

import (
	"encoding/binary"
	"os"
	"testing"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/shadowtee/shadowtee/internal/sandbox"
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

// newTunIn creates a TUN device inside a network namespace, removed with it.
func newTunIn(t *testing.T, ns *sandbox.Netns) *tunDevice {
	t.Helper()
	var tun *tunDevice
	var skip error
	err := ns.Do(func() error {
		f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
		if err != nil {
			skip = err
			return nil
		}
		var req [unix.IFNAMSIZ + 64]byte
		name := "stee" + randomSuffix()
		copy(req[:], name)
		binary.NativeEndian.PutUint16(req[unix.IFNAMSIZ:], unix.IFF_TUN|unix.IFF_NO_PI)
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req[0]))); errno != 0 {
			f.Close()
			skip = errno
			return nil
		}
		tun = &tunDevice{Name: name, file: f}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if skip != nil {
		t.Skipf("no TUN support: %v", skip)
	}
	t.Cleanup(func() { tun.file.Close() })
	l, err := ns.Netlink().LinkByName(tun.Name)
	if err != nil {
		t.Fatal(err)
	}
	tun.Index = l.Attrs().Index
	if err := ns.LinkUp(tun.Name); err != nil {
		t.Fatal(err)
	}
	return tun
}
