package reassembly

// The flows form an intrusive doubly linked list in order of last activity.
// Intrusive, because a list node of its own would cost an allocation and a
// pointer per flow; a list rather than a heap, because the assembler clock
// never goes back, so moving a touched flow to the tail keeps it sorted.

// pushBack appends c as the most recently active flow.
func (a *Assembler) pushBack(c *conn) {
	c.prev = a.tail
	c.next = nil
	if a.tail != nil {
		a.tail.next = c
	} else {
		a.head = c
	}
	a.tail = c
}

// unlink removes c from the activity list.
func (a *Assembler) unlink(c *conn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		a.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		a.tail = c.prev
	}
	c.prev, c.next = nil, nil
}

// touch records activity on c now.
func (a *Assembler) touch(c *conn) {
	c.lastSeen = a.clock
	if a.tail != c {
		a.unlink(c)
		a.pushBack(c)
	}
}
