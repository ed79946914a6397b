package rbd

import "time"

// SetCallBound sets how long a short call may go unanswered before its
// helper counts as wedged (tests wedge one under a small bound); 0 restores
// the one derived from the configured Timeout.
func (c *Conn) SetCallBound(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d == 0 {
		d = callBound(c.cfg.Timeout)
	}
	c.bound = d
}
