package capture

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/shadowtee/shadowtee/bpf"
)

// Config says where and what the kernel program copies.
type Config struct {
	Interfaces   []string // names, globs ("veth*") or "auto"
	Ports        []uint16
	Destinations []netip.Prefix // when set, only traffic of these servers
	AttachMode   bpf.AttachMode
	RingBytes    int           // kernel ring buffer size
	Poll         time.Duration // how often the ring is read while records flow
	// Answers copies the servers' answers too (egress), for comparison.
	Answers bool
}

// Interface is one attached interface and the attach mode in use.
type Interface struct {
	Name string `json:"name"`
	Mode string `json:"mode"`
}

// Stats are the live capture's counters: the kernel program's, the ring
// reader's, and the interfaces'.
type Stats struct {
	Kernel bpf.Counters
	Reader bpf.ReaderStats
	Ifaces IfaceCounts
}

// Live is the kernel side of a run: the loaded program, its attachments,
// the goroutine reading its ring buffer into a sink, and the watch on
// interfaces that come and go.
type Live struct {
	log   *slog.Logger
	tee   *bpf.Tee
	rd    *bpf.Reader
	sel   ifaceSelector
	mode  bpf.AttachMode
	ports []uint16

	mu          sync.Mutex
	attachments []*bpf.Attachment
	stopped     bool // no attach after Stop, whatever events still arrive
	ifaces      IfaceStats
	stopWatch   chan struct{}
	stopOnce    sync.Once

	readDone chan struct{} // closed when the reader goroutine has returned
	readErr  error         // what it returned, once readDone is closed
}

// Start loads the program, starts reading into sink, then attaches to every
// interface the configuration selects. On error, everything started is
// undone.
func Start(cfg Config, sink bpf.Sink, log *slog.Logger) (*Live, error) {
	if cfg.AttachMode == "" {
		cfg.AttachMode = bpf.AttachAuto
	}
	if cfg.Poll <= 0 {
		cfg.Poll = bpf.DefaultPoll
	}
	sel, err := parseIfaces(cfg.Interfaces)
	if err != nil {
		return nil, err
	}
	tee, err := bpf.Load(bpf.Options{Ports: cfg.Ports, Destinations: cfg.Destinations, RingBytes: cfg.RingBytes, Answers: cfg.Answers})
	if err != nil {
		return nil, explainPermission(err)
	}
	rd, err := tee.NewReader(cfg.Poll)
	if err != nil {
		tee.Close()
		return nil, err
	}
	c := &Live{log: log, tee: tee, rd: rd, sel: sel, mode: cfg.AttachMode,
		ports: cfg.Ports, readDone: make(chan struct{}), stopWatch: make(chan struct{})}
	go func() {
		c.readErr = rd.Run(sink)
		close(c.readDone)
	}()
	// Follow interfaces as they come and go, named ones too: one that is
	// deleted is forgotten (and counted), and attached again if it returns.
	// Subscribe before listing, so that no interface slips in between.
	if err := c.watchLinks(c.stopWatch); err != nil {
		c.Stop()
		c.Close()
		return nil, err
	}
	if err := c.attachSelected(); err != nil {
		c.Stop()
		c.Close()
		return nil, err
	}
	return c, nil
}

// Interfaces lists the attachments in use.
func (c *Live) Interfaces() []Interface {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Interface, 0, len(c.attachments))
	for _, a := range c.attachments {
		out = append(out, Interface{Name: a.Iface, Mode: string(a.Mode)})
	}
	return out
}

// Failed is closed if the reader stops on its own; Err then says why.
func (c *Live) Failed() <-chan struct{} { return c.readDone }

// Err returns why the reader stopped, once Failed is closed.
func (c *Live) Err() error { return c.readErr }

// SetFilter makes the kernel copy these ports and destinations from now on.
func (c *Live) SetFilter(ports []uint16, dests []netip.Prefix) error {
	if err := c.tee.SetPorts(ports); err != nil {
		return err
	}
	c.mu.Lock()
	c.ports = ports
	c.mu.Unlock()
	return c.tee.SetDestinations(dests)
}

// Stats reads the counters. The kernel's stay readable after Stop, until
// Close.
func (c *Live) Stats() (Stats, error) {
	k, err := c.tee.Counters()
	return Stats{Kernel: k, Reader: c.rd.Stats(), Ifaces: c.ifaces.counts()}, err
}

// Stop detaches, lets the reader hand the sink every record the kernel
// copied before the detach, and stops it. It may be called more than once.
func (c *Live) Stop() {
	c.stopOnce.Do(func() {
		close(c.stopWatch)
		c.mu.Lock()
		c.stopped = true
		for _, a := range c.attachments {
			if err := a.Close(); err != nil {
				c.log.Warn("detach", "iface", a.Iface, "err", err)
			} else {
				c.log.Info("detached", "iface", a.Iface, "mode", a.Mode)
			}
		}
		c.attachments = nil
		c.mu.Unlock()
		// With the hooks gone no program writes a record any more: Stop
		// reads what is in the ring, flushes the sink and returns.
		c.rd.Stop()
		<-c.readDone
		if c.readErr != nil {
			c.log.Error("ring buffer reader", "err", c.readErr)
		}
	})
}

// Close releases the ring buffer and unloads the program, after Stop.
func (c *Live) Close() error {
	c.rd.Close()
	if err := c.tee.Close(); err != nil {
		return fmt.Errorf("unload: %w", err)
	}
	return nil
}
