package capture

import (
	"errors"
	"fmt"
	"net"
	"path"
	"strings"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ifaceSelector picks interfaces by exact name, by glob ("veth*") or all of
// them ("auto": every interface that is up, loopback excepted).
type ifaceSelector struct {
	names []string // exact names: each must exist at start
	globs []string
	auto  bool
}

func parseIfaces(patterns []string) (ifaceSelector, error) {
	var s ifaceSelector
	for _, p := range patterns {
		switch {
		case p == "auto":
			s.auto = true
		case strings.ContainsAny(p, "*?["):
			if _, err := path.Match(p, ""); err != nil {
				return s, fmt.Errorf("interface pattern %q: %w", p, err)
			}
			s.globs = append(s.globs, p)
		default:
			s.names = append(s.names, p)
		}
	}
	return s, nil
}

// selects reports whether the selector picks the interface.
func (s ifaceSelector) selects(attrs *netlink.LinkAttrs) bool {
	for _, n := range s.names {
		if n == attrs.Name {
			return true
		}
	}
	for _, g := range s.globs {
		if ok, _ := path.Match(g, attrs.Name); ok {
			return true
		}
	}
	return s.auto && attrs.Flags&net.FlagUp != 0 && attrs.Flags&net.FlagLoopback == 0
}

// IfaceStats counts interfaces attached and detached as they come and go.
type IfaceStats struct {
	Attached     atomic.Uint64
	Detached     atomic.Uint64
	AttachFailed atomic.Uint64
}

// IfaceCounts is a copy of IfaceStats.
type IfaceCounts struct{ Attached, Detached, AttachFailed uint64 }

func (s *IfaceStats) counts() IfaceCounts {
	return IfaceCounts{s.Attached.Load(), s.Detached.Load(), s.AttachFailed.Load()}
}

// attachSelected attaches to every existing interface the selector picks.
// An exact name that does not exist is an error: it is a typo more often
// than an interface yet to come.
func (c *Live) attachSelected() error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list interfaces: %w", err)
	}
	seen := map[string]bool{}
	for _, l := range links {
		seen[l.Attrs().Name] = true
	}
	for _, n := range c.sel.names {
		if !seen[n] {
			return fmt.Errorf("interface %q does not exist (see `ip link`)", n)
		}
	}
	for _, l := range links {
		if c.sel.selects(l.Attrs()) {
			if err := c.attach(l.Attrs()); err != nil {
				return err
			}
		}
	}
	return nil
}

// attach hooks the program to one interface unless it is hooked already.
func (c *Live) attach(attrs *netlink.LinkAttrs) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	for _, a := range c.attachments {
		if a.Index == attrs.Index {
			return nil
		}
	}
	a, err := c.tee.Attach(attrs.Name, c.mode)
	if err != nil {
		c.ifaces.AttachFailed.Add(1)
		return explainPermission(err)
	}
	c.attachments = append(c.attachments, a)
	c.ifaces.Attached.Add(1)
	c.log.Info("attached", "iface", a.Iface, "mode", a.Mode, "ports", c.ports)
	return nil
}

// forget drops the attachment of an interface that went away; the kernel
// removed the hook with the device.
func (c *Live) forget(index int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, a := range c.attachments {
		if a.Index == index {
			_ = a.Close()
			c.attachments = append(c.attachments[:i], c.attachments[i+1:]...)
			c.ifaces.Detached.Add(1)
			c.log.Info("interface gone, detached", "iface", a.Iface)
			return
		}
	}
}

// watchLinks follows interfaces as they appear and disappear until done is
// closed: a pod's veth created after the start is attached when it shows up,
// and an interface that goes is forgotten.
func (c *Live) watchLinks(done <-chan struct{}) error {
	updates := make(chan netlink.LinkUpdate, 256)
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			select {
			case <-done: // the subscription is being closed: not news
			default:
				c.log.Warn("interface events", "err", err)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("follow interfaces: %w", err)
	}
	go func() {
		for u := range updates {
			attrs := u.Link.Attrs()
			switch u.Header.Type {
			case unix.RTM_NEWLINK:
				if c.sel.selects(attrs) {
					if err := c.attach(attrs); err != nil && !errors.Is(err, unix.ENODEV) {
						c.log.Warn("attach", "iface", attrs.Name, "err", err)
					}
				}
			case unix.RTM_DELLINK:
				c.forget(attrs.Index)
			}
		}
	}()
	return nil
}
