package shadow

import (
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// AnswerHold lets the shadow's HTTP/2 answers wait in their sockets for
// the capture's next look at its ring, instead of each waking the agent.
//
// While traffic flows the capture wakes every poll interval anyway (see
// bpf.DefaultPoll). An answer that arrives in between would cost a wake-up
// of its own, and a read of its own. On HTTP/2, where a few connections
// carry every stream, holding turns them into one read per connection per
// look: half the agent's wake-ups at 5,000 requests a second. (On HTTP/1,
// where every answer has its own connection, holding keeps connections
// busy longer and the pool grows: it costs more than it saves, and the
// HTTP/1 sender does not hold.)
//
// So while the capture polls, a connection that waits for bytes raises its
// socket's SO_RCVLOWAT, and the kernel does not signal readiness for a few
// bytes; at the capture's next look, Tick lowers it again, and the kernel
// signals, at once, each socket that holds bytes (setting SO_RCVLOWAT
// checks the socket, as new data would). The reader goroutines then run on
// the thread that is awake, and one read takes all that came for a
// connection since the last look. A FIN, a reset or a full low-water mark
// is signalled whatever the mark.
//
// An answer is so read late by a poll interval, or by three when traffic
// stops: the next look that finds records ticks, and the capture sleeps
// after two looks that find none. When it goes to sleep (Tick(false)), the
// marks are lowered and no more raised: answers wake the agent as they
// come. With no Tick at all (replay), nothing is held.
type AnswerHold struct {
	polling atomic.Bool
	stopped atomic.Bool // Stop: nothing is held any more, whatever Tick says

	mu   sync.Mutex
	held []*quietConn // raised since the last Tick
}

// holdLowat is the raised SO_RCVLOWAT: more than a poll interval's answers
// on one connection, short of what would grow its receive buffer much.
const holdLowat = 64 << 10

// maxHeld bounds the sockets held at once, and so what a Tick costs (a
// call for each): past it, answers wake the agent as they come.
const maxHeld = 64

// NewAnswerHold returns an AnswerHold that holds nothing until the first
// Tick(true).
func NewAnswerHold() *AnswerHold { return new(AnswerHold) }

// Tick is called by the capture each time it has read its ring: polling
// says that it will look again within its poll interval (false: it is going
// to sleep until the kernel wakes it). Tick signals every held socket that
// has bytes; the others stay held while the capture polls. It never blocks
// on a socket.
func (h *AnswerHold) Tick(polling bool) {
	if h == nil {
		return
	}
	h.polling.Store(polling && !h.stopped.Load())
	h.mu.Lock()
	kept := h.held[:0]
	for _, c := range h.held {
		// A connection closed since fails Control, and is let go.
		if polling && c.rc.Control(c.pendingFn) == nil && c.pending == 0 {
			kept = append(kept, c)
			continue
		}
		c.held = false
		_ = c.rc.Control(c.unholdFn)
	}
	clear(h.held[len(kept):])
	h.held = kept
	h.mu.Unlock()
}

// Stop lets every held socket go and holds nothing from then on, whatever
// Tick says: for the end of a capture, whose last Flush may still tick.
func (h *AnswerHold) Stop() {
	if h == nil {
		return
	}
	h.stopped.Store(true)
	h.Tick(false)
}

// hold raises c's mark, fd's socket, if the capture polls. It is called by
// c's reader, with nothing to read, just before it waits for readiness: a
// byte that came before the mark was raised has already signalled.
func (h *AnswerHold) hold(c *quietConn, fd uintptr) {
	if !h.polling.Load() {
		return
	}
	h.mu.Lock()
	// Checked again under mu: a Tick(false) after this sees c in held.
	if !c.held && h.polling.Load() && len(h.held) < maxHeld && setLowat(fd, holdLowat) == 0 {
		c.held = true
		h.held = append(h.held, c)
	}
	h.mu.Unlock()
}

// pendingBytes is how many bytes a socket holds (FIONREAD), by a raw call.
func pendingBytes(fd uintptr) int {
	var n int32
	if _, _, e := syscall.RawSyscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n))); e != 0 {
		return 1 // let the reader find out
	}
	return int(n)
}

// setLowat sets a socket's SO_RCVLOWAT by a raw call (see quietConn).
func setLowat(fd uintptr, v int32) syscall.Errno {
	_, _, e := syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, fd, syscall.SOL_SOCKET, syscall.SO_RCVLOWAT,
		uintptr(unsafe.Pointer(&v)), unsafe.Sizeof(v), 0)
	return e
}
