// Package cephconn keeps a Ceph connection that is opened when it is
// first needed and forgotten after a failure, so that the next call
// reconnects: what the storage controller and the mapped-snapshot taker
// each hold. P is the owner's own interface over the connection.
package cephconn

// Lazy is the connection. It has no lock of its own: its owner guards it
// with the mutex that guards what goes with the connection (the storage
// controller's lease state), so that both change together.
type Lazy[P comparable] struct {
	connect func() (P, error)
	open    P
}

// New returns a Lazy that opens its connection with connect.
func New[P comparable](connect func() (P, error)) Lazy[P] {
	return Lazy[P]{connect: connect}
}

// Get returns the open connection, opening one if there is none.
func (l *Lazy[P]) Get() (P, error) {
	var none P
	if l.open != none {
		return l.open, nil
	}
	p, err := l.connect()
	if err != nil {
		return none, err
	}
	l.open = p
	return p, nil
}

// Open returns the open connection without opening one (the zero P when
// there is none).
func (l *Lazy[P]) Open() P { return l.open }

// Drop forgets p, a connection that failed, and closes it, if it is still
// the open one (another call may have replaced it already); it says
// whether it did.
func (l *Lazy[P]) Drop(p P) bool {
	var none P
	if l.open == none || l.open != p {
		return false
	}
	closeConn(l.open)
	l.open = none
	return true
}

// Close closes and forgets the open connection, if there is one.
func (l *Lazy[P]) Close() {
	var none P
	if l.open != none {
		closeConn(l.open)
		l.open = none
	}
}

// Set makes p the open connection: a test puts a faulty wrapper of the
// real one in its place.
func (l *Lazy[P]) Set(p P) { l.open = p }

func closeConn(p any) {
	if c, ok := p.(interface{ Close() }); ok {
		c.Close()
	}
}
