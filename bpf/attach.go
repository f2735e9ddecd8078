package bpf

import (
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// AttachMode selects how the program is hooked to an interface's ingress.
type AttachMode string

// Attach modes.
const (
	// AttachAuto uses TCX where the kernel has it (6.6+), else AttachTC.
	AttachAuto AttachMode = "auto"
	// AttachTCX uses a TCX link, which the kernel removes when the agent
	// exits, however it exits.
	AttachTCX AttachMode = "tcx"
	// AttachTC uses a clsact qdisc and a BPF filter of our own. The filter
	// outlives a killed agent; the next start replaces it.
	AttachTC AttachMode = "tc"
)

// ParseAttachMode parses "auto", "tcx" or "tc".
func ParseAttachMode(s string) (AttachMode, error) {
	switch m := AttachMode(s); m {
	case AttachAuto, AttachTCX, AttachTC:
		return m, nil
	}
	return "", fmt.Errorf("attach mode %q: want auto, tcx or tc", s)
}

// The legacy tc filter is recognised by its name. Priority 1 runs it ahead
// of filters that might redirect or drop the packet; the handle keeps it
// apart from other filters sharing that priority.
const (
	filterName     = "shadowtee"
	filterPriority = 1
	filterHandle   = 0x5eed
)

// Attachment is the program hooked to one interface.
type Attachment struct {
	Iface string
	Index int
	Mode  AttachMode // AttachTCX or AttachTC: what is in use

	link   link.Link
	filter *netlink.BpfFilter
}

// Attach hooks the program to the ingress of the named interface. Whatever
// the mode, a filter left behind by an earlier agent that was killed is
// removed first, so packets are never copied twice.
func (t *Tee) Attach(iface string, mode AttachMode) (*Attachment, error) {
	nl, err := netlink.LinkByName(iface)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) {
			return nil, fmt.Errorf("interface %q does not exist (see `ip link`)", iface)
		}
		return nil, fmt.Errorf("interface %q: %w", iface, err)
	}
	attrs := nl.Attrs()
	prog := t.program(hasEthernetHeader(attrs))
	a := &Attachment{Iface: iface, Index: attrs.Index}

	if _, err := removeStaleFilters(nl); err != nil {
		return nil, fmt.Errorf("interface %s: %w", iface, err)
	}

	if mode == AttachAuto || mode == AttachTCX {
		l, err := link.AttachTCX(link.TCXOptions{
			Interface: attrs.Index,
			Program:   prog,
			Attach:    ebpf.AttachTCXIngress,
			Anchor:    link.Head(),
		})
		if err == nil {
			a.Mode, a.link = AttachTCX, l
			return a, nil
		}
		if mode == AttachTCX || !errors.Is(err, ebpf.ErrNotSupported) {
			return nil, fmt.Errorf("attach TCX to %s: %w", iface, err)
		}
	}

	if err := ensureClsact(attrs.Index); err != nil {
		return nil, fmt.Errorf("interface %s: %w", iface, err)
	}
	f := ourFilter(attrs.Index, prog.FD())
	if err := netlink.FilterReplace(f); err != nil {
		return nil, fmt.Errorf("add tc filter to %s: %w", iface, err)
	}
	a.Mode, a.filter = AttachTC, f
	return a, nil
}

// Close detaches the program. It removes only what Attach created: never
// the clsact qdisc, which other tools' filters may share. An interface that
// has gone away took the hook with it; that is not an error.
func (a *Attachment) Close() error {
	var err error
	if a.link != nil {
		err = a.link.Close()
	}
	if a.filter != nil {
		err = netlink.FilterDel(a.filter)
	}
	if errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("detach from %s: %w", a.Iface, err)
	}
	return nil
}

// hasEthernetHeader tells which program variant suits the device: devices
// without a link-layer header (tun, WireGuard, IP tunnels) hand TC a packet
// that starts with the IP header.
func hasEthernetHeader(attrs *netlink.LinkAttrs) bool {
	switch attrs.EncapType {
	case "ether", "loopback":
		return true
	case "":
		return len(attrs.HardwareAddr) == 6
	}
	return false
}

func ourFilter(ifindex, fd int) *netlink.BpfFilter {
	return &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    netlink.HANDLE_MIN_INGRESS,
			Handle:    filterHandle,
			Protocol:  unix.ETH_P_ALL,
			Priority:  filterPriority,
		},
		Fd:           fd,
		Name:         filterName,
		DirectAction: true,
	}
}

// ensureClsact adds the clsact qdisc unless the interface has one already.
func ensureClsact(ifindex int) error {
	q := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: ifindex,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
	if err := netlink.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact qdisc: %w", err)
	}
	return nil
}

// removeStaleFilters deletes ingress BPF filters that carry our name: they
// were left by an agent that died without detaching. Filters of other tools
// are left alone. It returns how many it removed.
func removeStaleFilters(nl netlink.Link) (int, error) {
	filters, err := netlink.FilterList(nl, netlink.HANDLE_MIN_INGRESS)
	if err != nil {
		// No clsact qdisc means no filter of ours either.
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return 0, nil
		}
		return 0, fmt.Errorf("list tc filters: %w", err)
	}
	removed := 0
	for _, f := range filters {
		bf, ok := f.(*netlink.BpfFilter)
		if !ok || bf.Name != filterName {
			continue
		}
		if err := netlink.FilterDel(bf); err != nil && !errors.Is(err, unix.ENOENT) {
			return removed, fmt.Errorf("remove stale tc filter: %w", err)
		}
		removed++
	}
	return removed, nil
}

// InterfaceExists reports whether an interface of that name exists in the
// current network namespace.
func InterfaceExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}
