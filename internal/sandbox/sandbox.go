package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Sandbox is a set of network namespaces created together.
type Sandbox struct {
	// ID prefixes the names of the namespaces, so that sandboxes of
	// concurrent runs do not meet.
	ID string

	mu   sync.Mutex
	nets []*Netns
}

// Netns is one network namespace of a Sandbox: one host.
type Netns struct {
	Name   string // name under /var/run/netns
	handle netns.NsHandle
	nl     *netlink.Handle
}

// New starts an empty sandbox. It needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN).
func New(prefix string) (*Sandbox, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("network namespaces need root")
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	return &Sandbox{ID: prefix + "-" + hex.EncodeToString(b[:])}, nil
}

// Netns creates the namespace "<ID>-<name>" with its loopback up.
func (s *Sandbox) Netns(name string) (*Netns, error) {
	full := s.ID + "-" + name
	var handle netns.NsHandle
	err := onLockedThread(func() error {
		origin, err := netns.Get()
		if err != nil {
			return err
		}
		defer origin.Close()
		// NewNamed switches this thread into the new namespace; switch back
		// before the thread is released.
		handle, err = netns.NewNamed(full)
		if serr := netns.Set(origin); serr != nil {
			return fmt.Errorf("return to the original namespace: %w", serr)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create network namespace %s: %w", full, err)
	}
	nl, err := netlink.NewHandleAt(handle)
	if err != nil {
		handle.Close()
		netns.DeleteNamed(full)
		return nil, fmt.Errorf("netlink in %s: %w", full, err)
	}
	n := &Netns{Name: full, handle: handle, nl: nl}
	s.mu.Lock()
	s.nets = append(s.nets, n)
	s.mu.Unlock()
	if err := n.LinkUp("lo"); err != nil {
		return nil, err
	}
	return n, nil
}

// Veth joins a and b with a veth pair named aIf in a and bIf in b, gives each
// end its addresses (CIDR notation; IPv6 ones without duplicate address
// detection, so they are usable at once) and brings both ends up.
func (s *Sandbox) Veth(a *Netns, aIf string, aAddrs []string, b *Netns, bIf string, bAddrs []string) error {
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aIf},
		PeerName:      bIf,
		PeerNamespace: netlink.NsFd(b.handle),
	}
	if err := a.nl.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s/%s: %w", aIf, bIf, err)
	}
	if err := a.AddrAdd(aIf, aAddrs...); err != nil {
		return err
	}
	if err := b.AddrAdd(bIf, bAddrs...); err != nil {
		return err
	}
	if err := a.LinkUp(aIf); err != nil {
		return err
	}
	return b.LinkUp(bIf)
}

// AddrAdd adds addresses (CIDR notation) to an interface of the namespace.
func (n *Netns) AddrAdd(iface string, cidrs ...string) error {
	l, err := n.nl.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", n.Name, iface, err)
	}
	for _, c := range cidrs {
		addr, err := netlink.ParseAddr(c)
		if err != nil {
			return err
		}
		if addr.IP.To4() == nil {
			addr.Flags |= unix.IFA_F_NODAD
		}
		if err := n.nl.AddrAdd(l, addr); err != nil {
			return fmt.Errorf("%s: add %s to %s: %w", n.Name, c, iface, err)
		}
	}
	return nil
}

// LinkUp brings an interface of the namespace up.
func (n *Netns) LinkUp(iface string) error {
	l, err := n.nl.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", n.Name, iface, err)
	}
	if err := n.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("%s: set %s up: %w", n.Name, iface, err)
	}
	return nil
}

// LinkDel removes an interface of the namespace (and its veth peer).
func (n *Netns) LinkDel(iface string) error {
	l, err := n.nl.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", n.Name, iface, err)
	}
	return n.nl.LinkDel(l)
}

// Netlink returns a netlink handle bound to the namespace.
func (n *Netns) Netlink() *netlink.Handle { return n.nl }

// Do runs fn on an OS thread that has entered the namespace. Sockets that
// fn creates belong to the namespace for their whole life, whichever thread
// uses them later.
func (n *Netns) Do(fn func() error) error {
	return onLockedThread(func() error {
		origin, err := netns.Get()
		if err != nil {
			return err
		}
		defer origin.Close()
		if err := netns.Set(n.handle); err != nil {
			return fmt.Errorf("enter %s: %w", n.Name, err)
		}
		ferr := fn()
		if err := netns.Set(origin); err != nil {
			// The thread stays locked and dies with its goroutine, so no
			// other goroutine runs in the wrong namespace.
			return errThreadLost{err}
		}
		return ferr
	})
}

// Listen opens a listener inside the namespace.
func (n *Netns) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// DialContext connects from inside the namespace. It fits
// http.Transport.DialContext.
func (n *Netns) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Start starts cmd as a process inside the namespace: a child inherits the
// namespace of the thread that forks it.
func (n *Netns) Start(cmd *exec.Cmd) error {
	return n.Do(cmd.Start)
}

// Close removes every namespace of the sandbox, and with them their
// interfaces and whatever was attached to those.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, n := range s.nets {
		n.nl.Close()
		n.handle.Close()
		if err := netns.DeleteNamed(n.Name); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("delete %s: %w", n.Name, err))
		}
	}
	s.nets = nil
	return errors.Join(errs...)
}

type errThreadLost struct{ err error }

func (e errThreadLost) Error() string {
	return "cannot leave the namespace: " + e.err.Error()
}

// onLockedThread runs fn on a goroutine locked to its OS thread. When fn
// reports that the thread could not return to its namespace, the thread is
// left locked, so the runtime ends it instead of reusing it.
func onLockedThread(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := fn()
		var lost errThreadLost
		if !errors.As(err, &lost) {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}

// DefaultRoute sends the namespace's traffic for other networks to gw.
func (n *Netns) DefaultRoute(gw string) error {
	ip := net.ParseIP(gw)
	if ip == nil {
		return fmt.Errorf("gateway %q is not an address", gw)
	}
	if err := n.nl.RouteAdd(&netlink.Route{Gw: ip}); err != nil {
		return fmt.Errorf("%s: default route via %s: %w", n.Name, gw, err)
	}
	return nil
}

// Sysctl sets a per-namespace sysctl, such as net/ipv4/ip_forward.
func (n *Netns) Sysctl(name, value string) error {
	return n.Do(func() error {
		// /proc/sys/net belongs to the network namespace of the thread
		// that opens it.
		return os.WriteFile("/proc/sys/"+name, []byte(value), 0o644)
	})
}
