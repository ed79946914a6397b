package rbd

import (
	"context"
	"errors"
	"time"
)

// Request is one operation sent to the strata-rbd helper: Op names a
// method of Conn, the other fields are its arguments.
type Request struct {
	Op         string
	Config     Config // Connect
	Ref, Ref2  Ref
	Size, N    uint64 // a size; an epoch or an import's ID
	Owner      string // an image owner; a lease cookie
	Flag       bool   // protect, flatten children
	Pool, OID  string
	Addr, Path string
	TTL        time.Duration
}

// Response is the helper's answer: Err and Kinds carry the error, the rest
// the results.
type Response struct {
	Err      string
	Kinds    []int // indices into wireErrors the error wraps
	Status   ImageStatus
	Names    []string
	Names2   []string
	Flag     bool
	Holder   LeaseHolder
	Addr     string
	N, Total uint64
	Until    map[string]time.Time
}

// wireErrors are the errors callers test with errors.Is: they cross the
// process boundary by index, the rest of the error as text.
var wireErrors = []error{ErrNoCeph, ErrNotFound, ErrExists, ErrInUse, ErrHasChildren, ErrShrink,
	ErrNotOwned, ErrStaleEpoch, ErrBadImage, context.Canceled, context.DeadlineExceeded}

// SetErr records err in the response.
func (p *Response) SetErr(err error) {
	if err == nil {
		return
	}
	p.Err = err.Error()
	for i, e := range wireErrors {
		if errors.Is(err, e) {
			p.Kinds = append(p.Kinds, i)
		}
	}
}

func (p *Response) err() error {
	if p.Err == "" {
		return nil
	}
	e := &remoteError{msg: p.Err}
	for _, i := range p.Kinds {
		if i >= 0 && i < len(wireErrors) {
			e.kinds = append(e.kinds, wireErrors[i])
		}
	}
	return e
}

// remoteError is an error the helper returned: its text, and the package's
// errors it wrapped.
type remoteError struct {
	msg   string
	kinds []error
}

func (e *remoteError) Error() string   { return e.msg }
func (e *remoteError) Unwrap() []error { return e.kinds }
