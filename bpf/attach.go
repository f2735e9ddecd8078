package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// AttachMode selects how the program is hooked to an interface (its ingress,
// and its egress for answers).
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

// A legacy tc filter of ours is named "shadowtee-<pid>" after the agent that
// added it, so that several agents (an attach and a record, say) can share an
// interface, and a starting agent can tell a filter left by a dead agent from
// one that belongs to a live one. Priority 1 runs it ahead of filters that
// might redirect or drop the packet; the handle, derived from the PID, keeps
// it apart from other filters sharing that priority.
const (
	filterPrefix   = "shadowtee"
	filterPriority = 1
	filterHandle   = 0x5eed0000
)

// filterName names the filter of the agent with this PID.
func filterName(pid int) string { return fmt.Sprintf("%s-%d", filterPrefix, pid) }

// staleFilter reports whether a filter name is ours and its agent is gone:
// no such process, or a process that is not shadowtee (the PID was reused),
// or this very process (a previous life in a PID namespace, such as a
// restarted container, where PIDs start over).
func staleFilter(name string) bool {
	rest, ok := strings.CutPrefix(name, filterPrefix)
	if !ok {
		return false
	}
	if rest == "" {
		return true // a name without PID: ours, from no live agent
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(rest, "-"))
	if err != nil || !strings.HasPrefix(rest, "-") {
		return false // someone else's name that happens to start alike
	}
	if pid == os.Getpid() {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return true
	}
	// The kernel keeps the first 15 bytes of the executable's name.
	comm := strings.TrimSpace(string(b))
	self := filepath.Base(os.Args[0])
	alive := comm == filterPrefix || comm == self[:min(len(self), 15)]
	return !alive
}

// Attachment is the program hooked to one interface: its ingress, and its
// egress too when the Tee was loaded with Options.Answers.
type Attachment struct {
	Iface   string
	Index   int
	Mode    AttachMode // AttachTCX or AttachTC: what is in use, on both hooks
	Answers bool       // egress is hooked too: the servers' answers are copied

	hooks []hook
}

// hook is one of the attachment's hooks: a TCX link or a tc filter.
type hook struct {
	link   link.Link
	filter *netlink.BpfFilter
}

// Attach hooks the program to the ingress of the named interface, and to its
// egress when the Tee copies answers. Whatever the mode, a filter left
// behind by an earlier agent that was killed is removed first, on both
// hooks, so packets are never copied twice.
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
	eth := hasEthernetHeader(attrs)
	a := &Attachment{Iface: iface, Index: attrs.Index, Answers: t.answers}

	if _, err := removeStaleFilters(nl); err != nil {
		return nil, fmt.Errorf("interface %s: %w", iface, err)
	}

	if mode == AttachAuto || mode == AttachTCX {
		l, err := attachTCX(attrs.Index, t.program(eth, false), ebpf.AttachTCXIngress)
		if err == nil {
			a.Mode = AttachTCX
			a.hooks = append(a.hooks, hook{link: l})
			if t.answers {
				el, err := attachTCX(attrs.Index, t.program(eth, true), ebpf.AttachTCXEgress)
				if err != nil {
					a.Close()
					return nil, fmt.Errorf("attach TCX to the egress of %s: %w", iface, err)
				}
				a.hooks = append(a.hooks, hook{link: el})
			}
			return a, nil
		}
		if mode == AttachTCX || !errors.Is(err, ebpf.ErrNotSupported) {
			return nil, fmt.Errorf("attach TCX to %s: %w", iface, err)
		}
	}

	if err := ensureClsact(attrs.Index); err != nil {
		return nil, fmt.Errorf("interface %s: %w", iface, err)
	}
	a.Mode = AttachTC
	f := ourFilter(attrs.Index, t.program(eth, false).FD(), netlink.HANDLE_MIN_INGRESS)
	if err := netlink.FilterReplace(f); err != nil {
		return nil, fmt.Errorf("add tc filter to %s: %w", iface, err)
	}
	a.hooks = append(a.hooks, hook{filter: f})
	if t.answers {
		ef := ourFilter(attrs.Index, t.program(eth, true).FD(), netlink.HANDLE_MIN_EGRESS)
		if err := netlink.FilterReplace(ef); err != nil {
			a.Close()
			return nil, fmt.Errorf("add tc filter to the egress of %s: %w", iface, err)
		}
		a.hooks = append(a.hooks, hook{filter: ef})
	}
	return a, nil
}

func attachTCX(ifindex int, prog *ebpf.Program, at ebpf.AttachType) (link.Link, error) {
	return link.AttachTCX(link.TCXOptions{
		Interface: ifindex,
		Program:   prog,
		Attach:    at,
		Anchor:    link.Head(),
	})
}

// Close detaches the program from every hook. It removes only what Attach
// created: never the clsact qdisc, which other tools' filters may share. An
// interface that has gone away took the hooks with it; that is not an error.
func (a *Attachment) Close() error {
	var errs []error
	for _, h := range a.hooks {
		var err error
		if h.link != nil {
			err = h.link.Close()
		}
		if h.filter != nil {
			err = netlink.FilterDel(h.filter)
		}
		if errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) {
			err = nil
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	a.hooks = nil
	if err := errors.Join(errs...); err != nil {
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

// ourFilter is this agent's filter on one clsact hook: parent is
// netlink.HANDLE_MIN_INGRESS or netlink.HANDLE_MIN_EGRESS. Both hooks get the
// same name, priority and handle.
func ourFilter(ifindex, fd int, parent uint32) *netlink.BpfFilter {
	pid := os.Getpid()
	return &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    parent,
			Handle:    filterHandle | uint32(pid&0xffff),
			Protocol:  unix.ETH_P_ALL,
			Priority:  filterPriority,
		},
		Fd:           fd,
		Name:         filterName(pid),
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

// removeStaleFilters deletes the BPF filters, on ingress and on egress, left
// by agents that died without detaching (see staleFilter). Filters of other
// tools and of live agents are left alone. It returns how many it removed.
func removeStaleFilters(nl netlink.Link) (int, error) {
	removed := 0
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		filters, err := netlink.FilterList(nl, parent)
		if err != nil {
			// No clsact qdisc means no filter of ours either.
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
				continue
			}
			return removed, fmt.Errorf("list tc filters: %w", err)
		}
		for _, f := range filters {
			bf, ok := f.(*netlink.BpfFilter)
			if !ok || !staleFilter(bf.Name) {
				continue
			}
			if err := netlink.FilterDel(bf); err != nil && !errors.Is(err, unix.ENOENT) {
				return removed, fmt.Errorf("remove stale tc filter: %w", err)
			}
			removed++
		}
	}
	return removed, nil
}
