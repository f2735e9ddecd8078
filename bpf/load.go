package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// MaxPorts is the number of server ports the kernel filter can hold, and
// MaxDestinations the number of server prefixes. They are the sizes of the
// ports and destinations maps of the embedded program (TEE_MAX_PORTS and
// TEE_MAX_DESTINATIONS in tee.h), read from it when the package is
// initialised; they are variables only for that reason, and nothing may
// assign them.
var MaxPorts, MaxDestinations = mapLimits()

// mapLimits reads the limits from the embedded program. The object is part
// of the binary, so failing to read it means a broken build.
func mapLimits() (ports, destinations int) {
	spec, err := loadTee()
	if err != nil {
		panic(fmt.Sprintf("bpf: the embedded program cannot be read: %v", err))
	}
	var maps teeMapSpecs
	if err := spec.Assign(&maps); err != nil {
		panic(fmt.Sprintf("bpf: the embedded program lacks a map: %v", err))
	}
	return int(maps.Ports.MaxEntries), int(maps.Destinations.MaxEntries)
}

// Options configure the loaded program.
type Options struct {
	// Ports are the TCP server ports whose segments are copied: the
	// destination port of what clients send, and, with Answers, the source
	// port of what the servers send back.
	Ports []uint16
	// Destinations, when not empty, narrow the copy to the connections of
	// servers in these prefixes (pod CIDRs, say).
	Destinations []netip.Prefix
	// RingBytes is the size of the ring buffer: a power of two, at least one
	// page. Default 8 MiB.
	RingBytes int
	// Answers makes Attach hook the egress of each interface too, so that
	// the servers' answers are copied (reassembly.ToClient segments) as well
	// as the clients' requests (reassembly.ToServer). Without it nothing is
	// attached to egress and no answer is copied.
	Answers bool
}

// DefaultRingBytes is the default size of the ring buffer.
const DefaultRingBytes = 8 << 20

// Tee is the loaded program with its maps. It is not attached anywhere yet.
type Tee struct {
	objs    teeObjects
	answers bool
}

// Load loads the program into the kernel. On a verifier rejection the error
// carries the whole verifier log; print it with %+v.
func Load(opts Options) (*Tee, error) {
	if opts.RingBytes == 0 {
		opts.RingBytes = DefaultRingBytes
	}
	page := os.Getpagesize()
	if opts.RingBytes < page || opts.RingBytes&(opts.RingBytes-1) != 0 {
		return nil, fmt.Errorf("ring buffer size %d: must be a power of two of at least %d bytes", opts.RingBytes, page)
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones
	// ignore it, and then this is a no-op. When it fails, loading fails
	// too, with the permission error that says what is missing.
	_ = rlimit.RemoveMemlock()

	spec, err := loadTee()
	if err != nil {
		return nil, err
	}
	var specs teeSpecs
	if err := spec.Assign(&specs); err != nil {
		return nil, err
	}
	specs.Events.MaxEntries = uint32(opts.RingBytes)

	t := &Tee{answers: opts.Answers}
	if err := spec.LoadAndAssign(&t.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load BPF program: %+v", ve)
		}
		return nil, fmt.Errorf("load BPF program: %w", err)
	}
	if err := t.SetPorts(opts.Ports); err != nil {
		t.Close()
		return nil, err
	}
	if err := t.SetDestinations(opts.Destinations); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// SetPorts makes the kernel filter copy exactly these server ports.
// Ports are added before others are removed, so a port that stays is never
// missing for a moment.
func (t *Tee) SetPorts(ports []uint16) error {
	want := slices.Clone(ports)
	slices.Sort(want)
	want = slices.Compact(want)
	if len(want) > MaxPorts {
		return fmt.Errorf("%d ports: the kernel filter holds at most %d", len(want), MaxPorts)
	}
	if slices.Contains(want, 0) {
		return errors.New("port 0 cannot be watched")
	}
	var one uint8 = 1
	for _, p := range want {
		if err := t.objs.Ports.Put(p, one); err != nil {
			return fmt.Errorf("add port %d: %w", p, err)
		}
	}
	var (
		key   uint16
		stale []uint16
	)
	iter := t.objs.Ports.Iterate()
	for iter.Next(&key, &one) {
		if _, found := slices.BinarySearch(want, key); !found {
			stale = append(stale, key)
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("list ports: %w", err)
	}
	for _, p := range stale {
		if err := t.objs.Ports.Delete(p); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove port %d: %w", p, err)
		}
	}
	return nil
}

// SetDestinations makes the kernel filter copy only the connections of
// servers in these prefixes; none means every server. As with ports, new
// entries go in before old ones go out.
func (t *Tee) SetDestinations(prefixes []netip.Prefix) error {
	if len(prefixes) > MaxDestinations {
		return fmt.Errorf("%d destinations: the kernel filter holds at most %d", len(prefixes), MaxDestinations)
	}
	want := map[teeTeeDstKey]bool{}
	if len(prefixes) == 0 {
		want[teeTeeDstKey{}] = true // ::/0 matches every address
	}
	for _, p := range prefixes {
		if !p.IsValid() {
			return fmt.Errorf("destination %v: not a valid prefix", p)
		}
		want[dstKey(p)] = true
	}
	var one uint8 = 1
	for k := range want {
		if err := t.objs.Destinations.Put(k, one); err != nil {
			return fmt.Errorf("add destination: %w", err)
		}
	}
	var (
		key   teeTeeDstKey
		stale []teeTeeDstKey
	)
	iter := t.objs.Destinations.Iterate()
	for iter.Next(&key, &one) {
		if !want[key] {
			stale = append(stale, key)
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("list destinations: %w", err)
	}
	for _, k := range stale {
		if err := t.objs.Destinations.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove destination: %w", err)
		}
	}
	return nil
}

// dstKey writes a prefix as a trie key: IPv4 as IPv4-mapped IPv6.
func dstKey(p netip.Prefix) teeTeeDstKey {
	p = p.Masked()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	return teeTeeDstKey{Prefixlen: uint32(bits), Addr: p.Addr().As16()}
}

// Counters are the kernel program's counters, summed over all CPUs and
// over both hooks (ingress, and egress with Options.Answers).
type Counters struct {
	Seen         uint64 // packets the program ran on
	Matched      uint64 // TCP segments of a watched port and server
	Copied       uint64 // matched segments copied whole
	CopiedBytes  uint64 // payload bytes copied
	DropRingFull uint64 // matched segments lost because the ring buffer was full
	DropLoad     uint64 // matched segments lost because their payload could not be read
	Truncated    uint64 // segments longer than the largest copy (their tail was lost)
	Fragments    uint64 // IP fragments seen (not followed)
	OtherDest    uint64 // segments of a watched port but of a server not in the destinations
	Wakeups      uint64 // records that woke the blocked reader (forced wake-ups)
	WakeupsLost  uint64 // wake-ups retried because the ring had no room for them
}

// Counters reads and sums the per-CPU counters.
func (t *Tee) Counters() (Counters, error) {
	var (
		zero   uint32
		perCPU []teeTeeCounters
	)
	if err := t.objs.Counters.Lookup(zero, &perCPU); err != nil {
		return Counters{}, fmt.Errorf("read counters: %w", err)
	}
	var sum [teeTeeCounterTEE_COUNTER_MAX]uint64
	for _, c := range perCPU {
		for i := range sum {
			sum[i] += c.V[i]
		}
	}
	return Counters{
		Seen:         sum[teeTeeCounterTEE_SEEN],
		Matched:      sum[teeTeeCounterTEE_MATCHED],
		Copied:       sum[teeTeeCounterTEE_COPIED],
		CopiedBytes:  sum[teeTeeCounterTEE_COPIED_BYTES],
		DropRingFull: sum[teeTeeCounterTEE_DROP_RING_FULL],
		DropLoad:     sum[teeTeeCounterTEE_DROP_LOAD],
		Truncated:    sum[teeTeeCounterTEE_TRUNCATED],
		Fragments:    sum[teeTeeCounterTEE_FRAGMENT],
		OtherDest:    sum[teeTeeCounterTEE_OTHER_DST],
		Wakeups:      sum[teeTeeCounterTEE_WAKEUP],
		WakeupsLost:  sum[teeTeeCounterTEE_WAKEUP_LOST],
	}, nil
}

// Answers reports whether Attach hooks egress too (Options.Answers).
func (t *Tee) Answers() bool { return t.answers }

// program returns the variant for a device with or without an Ethernet
// header, for the ingress (requests) or the egress (answers) hook.
func (t *Tee) program(ethernet, egress bool) *ebpf.Program {
	switch {
	case ethernet && egress:
		return t.objs.TeeEthEgress
	case ethernet:
		return t.objs.TeeEth
	case egress:
		return t.objs.TeeL3Egress
	}
	return t.objs.TeeL3
}

// Close unloads the program and its maps. Attachments must be closed first;
// a TCX link or tc filter keeps its own reference to the program.
func (t *Tee) Close() error {
	return t.objs.Close()
}
