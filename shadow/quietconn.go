package shadow

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// quietConn is a TCP connection whose reads and writes are raw system
// calls on its non-blocking socket; they wait for readiness in Go's
// netpoller, with the connection's deadlines, as net.TCPConn's do.
//
// Why: every syscall.Read and syscall.Write goes through the runtime's
// entersyscall, which wakes the runtime's monitor thread (sysmon) from the
// deep sleep it takes while the process idles, and sets it back to looking
// every 20 µs. An agent that idles between requests paid one wake-up of
// sysmon per request or more: half of its context switches at 1,000
// requests a second. A call on a non-blocking socket never blocks, so it
// may run without handing off its P, as the runtime's own netpoll calls do.
//
// Reads are serialised among themselves, and writes among themselves, as on
// a net.Conn.
type quietConn struct {
	*net.TCPConn
	rc syscall.RawConn

	hold      *AnswerHold      // nil: answers are never held
	held      bool             // SO_RCVLOWAT raised; guarded by hold.mu
	unholdFn  func(fd uintptr) // c.unhold
	pendingFn func(fd uintptr) // c.readPending, into pending
	pending   int              // guarded by hold.mu

	rmu    sync.Mutex
	rbuf   []byte
	rn     int
	rerr   syscall.Errno
	readFn func(fd uintptr) bool // c.readOnce, made once so that a read allocates nothing

	wmu     sync.Mutex
	wbuf    []byte
	wn      int
	werr    syscall.Errno
	writeFn func(fd uintptr) bool // c.writeAll
	tryFn   func(fd uintptr) bool // c.writeOnce
}

// quiet returns nc as a quietConn if it is a TCP connection, else nc.
// hold, if not nil, holds its answers while the capture polls.
func quiet(nc net.Conn, hold *AnswerHold) net.Conn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nc
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nc
	}
	c := &quietConn{TCPConn: tc, rc: rc, hold: hold}
	c.readFn, c.writeFn, c.tryFn = c.readOnce, c.writeAll, c.writeOnce
	c.unholdFn, c.pendingFn = c.unhold, c.readPending
	return c
}

func (c *quietConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf, c.rn, c.rerr = p, 0, 0
	err := c.rc.Read(c.readFn)
	if err != nil && c.hold != nil && isTimeout(err) {
		// Bytes held in the socket when the deadline came are not late.
		c.rc.Control(c.readNow)
		if c.rn > 0 || c.rerr != 0 {
			err = nil
		}
	}
	n, errno := c.rn, c.rerr
	c.rbuf = nil
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// readOnce is the callback of RawConn.Read: false (wait for readiness) when
// the socket has nothing yet.
func (c *quietConn) readOnce(fd uintptr) bool {
	if c.readSome(fd) {
		return true
	}
	if c.hold != nil {
		c.hold.hold(c, fd)
	}
	return false
}

// readNow is readOnce for RawConn.Control: one read, never a wait.
func (c *quietConn) readNow(fd uintptr) { c.readSome(fd) }

// readSome makes one read(2) into rbuf, setting rn or rerr; false when the
// socket had nothing (EAGAIN).
func (c *quietConn) readSome(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch e {
		case 0:
			c.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rerr = e
		return true
	}
}

// unhold lowers the socket's SO_RCVLOWAT: the kernel signals readiness if
// it holds a byte (see AnswerHold).
func (c *quietConn) unhold(fd uintptr) { setLowat(fd, 1) }

func (c *quietConn) readPending(fd uintptr) { c.pending = pendingBytes(fd) }

func (c *quietConn) Write(b []byte) (int, error) {
	return c.write(b, c.writeFn)
}

// tryWrite writes what of b the socket takes now, never waiting for it to
// take more (see tryWriter).
func (c *quietConn) tryWrite(b []byte) (int, error) {
	return c.write(b, c.tryFn)
}

func (c *quietConn) write(b []byte, fn func(uintptr) bool) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wn, c.werr = b, 0, 0
	err := c.rc.Write(fn)
	n, errno := c.wn, c.werr
	c.wbuf = nil
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// writeAll is the callback of RawConn.Write for Write: done when all of
// wbuf is written or the socket fails; false (wait for room) when the
// socket is full.
func (c *quietConn) writeAll(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		if !c.writeSome(fd) {
			return c.werr != 0
		}
	}
	return true
}

// writeOnce is the callback for tryWrite: done whatever one write wrote.
func (c *quietConn) writeOnce(fd uintptr) bool {
	c.writeSome(fd)
	return true
}

// writeSome makes one write(2) of what is left; false when it wrote
// nothing (the socket is full, or failed: then werr is set).
func (c *quietConn) writeSome(fd uintptr) bool {
	rest := c.wbuf[c.wn:]
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
		switch e {
		case 0:
			c.wn += int(n)
			return n > 0
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.werr = e
		return false
	}
}

// opError gives err the form a net.TCPConn's error has: an *net.OpError
// named after the call (isReset looks at the name).
func (c *quietConn) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err // RawConn's own, named raw-read or raw-write
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
