package agent

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/shadowtee/shadowtee/bpf"
)

// CaptureConfig says where and what the kernel program copies.
type CaptureConfig struct {
	Interfaces   []string
	Ports        []uint16
	Destinations []netip.Prefix // when set, only traffic towards these
	AttachMode   bpf.AttachMode
	RingBytes    int           // kernel ring buffer size
	Poll         time.Duration // longest wait between looks at the ring
}

// liveCapture is the kernel side of a run: the loaded program, its
// attachments and the goroutine reading its ring buffer into a sink.
type liveCapture struct {
	log   *slog.Logger
	poll  time.Duration
	tee   *bpf.Tee
	rd    *bpf.Reader
	sel   ifaceSelector
	mode  bpf.AttachMode
	ports []uint16

	mu          sync.Mutex
	attachments []*bpf.Attachment
	stopped     bool // no attach after stop, whatever events still arrive
	ifaces      IfaceStats
	stopWatch   chan struct{}

	readDone chan struct{} // closed when the reader goroutine has returned
	readErr  error         // what it returned, once readDone is closed
}

// startCapture loads the program, starts reading into sink, then attaches
// to every interface. On error, everything started is undone.
func startCapture(cfg CaptureConfig, sink bpf.Sink, log *slog.Logger) (*liveCapture, error) {
	if cfg.AttachMode == "" {
		cfg.AttachMode = bpf.AttachAuto
	}
	if cfg.Poll <= 0 {
		cfg.Poll = bpf.DefaultPoll
	}
	tee, err := bpf.Load(bpf.Options{Ports: cfg.Ports, Destinations: cfg.Destinations, RingBytes: cfg.RingBytes})
	if err != nil {
		return nil, explainPermission(err)
	}
	rd, err := tee.NewReader(cfg.Poll)
	if err != nil {
		tee.Close()
		return nil, err
	}
	sel, err := parseIfaces(cfg.Interfaces)
	if err != nil {
		tee.Close()
		return nil, err
	}
	c := &liveCapture{log: log, poll: cfg.Poll, tee: tee, rd: rd, sel: sel, mode: cfg.AttachMode,
		ports: cfg.Ports, readDone: make(chan struct{}), stopWatch: make(chan struct{})}
	go func() {
		c.readErr = rd.Run(sink)
		close(c.readDone)
	}()
	// Follow interfaces as they come and go, named ones too: one that is
	// deleted is forgotten (and counted), and attached again if it returns.
	// Subscribe before listing, so that no interface slips in between.
	if err := c.watchLinks(c.stopWatch); err != nil {
		c.stop()
		c.close()
		return nil, err
	}
	if err := c.attachSelected(); err != nil {
		c.stop()
		c.close()
		return nil, err
	}
	return c, nil
}

// interfaces lists the attachments in use.
func (c *liveCapture) interfaces() []ReadyInterface {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]ReadyInterface, 0, len(c.attachments))
	for _, a := range c.attachments {
		out = append(out, ReadyInterface{Name: a.Iface, Mode: string(a.Mode)})
	}
	return out
}

// failed is closed if the reader stops on its own; err then says why.
func (c *liveCapture) failed() <-chan struct{} { return c.readDone }

// err returns why the reader stopped, once failed is closed.
func (c *liveCapture) err() error { return c.readErr }

// setFilter makes the kernel copy these ports and destinations from now on.
func (c *liveCapture) setFilter(ports []uint16, dests []netip.Prefix) error {
	if err := c.tee.SetPorts(ports); err != nil {
		return err
	}
	c.mu.Lock()
	c.ports = ports
	c.mu.Unlock()
	return c.tee.SetDestinations(dests)
}

// counters reads the kernel program's counters.
func (c *liveCapture) counters() (bpf.Counters, error) { return c.tee.Counters() }

// stop detaches, reads what the kernel copied before the detach, stops the
// reader (whose last act is to flush the sink) and unloads the program.
func (c *liveCapture) stop() {
	select {
	case <-c.stopWatch:
	default:
		close(c.stopWatch)
	}
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
	deadline := time.Now().Add(time.Second)
	for c.rd.Pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(c.poll)
	}
	time.Sleep(2 * c.poll) // let the reader hand over its last records
	c.rd.Close()
	<-c.readDone
	if c.readErr != nil {
		c.log.Error("ring buffer reader", "err", c.readErr)
	}
	// The counters stay readable for the summary until the program is
	// unloaded; read them first.
}

// close unloads the program.
func (c *liveCapture) close() error {
	if err := c.tee.Close(); err != nil {
		return fmt.Errorf("unload: %w", err)
	}
	return nil
}
