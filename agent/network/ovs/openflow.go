package ovs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// The driver asks ovs-vswitchd how many flows it has on every pass (is the
// recorded generation still installed?) and every canary tick. An
// ovs-ofctl process per question cost 15-60 ms on a loaded host, most of
// an agent restart's convergence; the question is one OpenFlow 1.3
// aggregate-statistics request, asked here over the bridge's management
// socket directly. Flows still go in through ovs-ofctl's bundle.

// OpenFlow 1.3 wire constants (OpenFlow Switch Specification 1.3.x, 7.1
// and 7.3.5.3).
const (
	ofVersion13      = 0x04
	ofptHello        = 0
	ofptError        = 1
	ofptEchoRequest  = 2
	ofptEchoReply    = 3
	ofptMultipartReq = 18
	ofptMultipartRep = 19
	ofpmpAggregate   = 2
	ofpmpfReplyMore  = 1
	ofpttAll         = 0xff
	ofppAny          = 0xffffffff
	ofpgAny          = 0xffffffff
	ofpmtOXM         = 1
	ofHeaderLen      = 8
)

// tableAll asks about the flows of every table.
const tableAll = ofpttAll

// flowQuery is one aggregate question: the flows of table (tableAll for
// all) whose cookie equals cookie under mask (mask 0: any cookie).
type flowQuery struct {
	table  uint8
	cookie uint64
	mask   uint64
}

// allFlows counts every flow of the bridge.
var allFlows = flowQuery{table: tableAll}

// genFlows counts the flows of generation gen in table (tableAll for all).
func genFlows(table uint8, gen uint32) flowQuery {
	return flowQuery{table: table, cookie: Cookie(gen), mask: ^uint64(0)}
}

// sockPath is the management socket's path in o.target (unix:PATH).
func (o ofctl) sockPath() (string, error) {
	p, ok := strings.CutPrefix(o.target, "unix:")
	if !ok {
		return "", fmt.Errorf("openflow target %q is not unix:PATH", o.target)
	}
	return p, nil
}

// CountFlows answers each query, in order, over one OpenFlow connection.
func (o ofctl) CountFlows(ctx context.Context, qs ...flowQuery) ([]int, error) {
	path, err := o.sockPath()
	if err != nil {
		return nil, err
	}
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("openflow: %w", err)
	}
	defer c.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	out, err := countFlows(c, qs)
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("openflow %s: %w", path, ctx.Err())
	}
	if err != nil {
		return nil, fmt.Errorf("openflow %s: %w", path, err)
	}
	return out, nil
}

// countFlows says hello, sends every request, then reads until each has
// its reply (xid i+1 for query i), answering echo requests on the way.
func countFlows(c io.ReadWriter, qs []flowQuery) ([]int, error) {
	msgs := ofHeader(nil, ofptHello, ofHeaderLen, 0)
	for i, q := range qs {
		msgs = aggregateRequest(msgs, uint32(i+1), q)
	}
	if _, err := c.Write(msgs); err != nil {
		return nil, err
	}
	out := make([]int, len(qs))
	pending := len(qs)
	hello := false
	for pending > 0 {
		typ, xid, body, err := readMsg(c)
		if err != nil {
			return nil, err
		}
		switch typ {
		case ofptHello:
			hello = true
		case ofptError:
			if len(body) >= 4 {
				return nil, fmt.Errorf("switch error type %d code %d (xid %d)", binary.BigEndian.Uint16(body), binary.BigEndian.Uint16(body[2:]), xid)
			}
			return nil, fmt.Errorf("switch error (xid %d)", xid)
		case ofptEchoRequest:
			reply := ofHeader(nil, ofptEchoReply, ofHeaderLen+len(body), xid)
			if _, err := c.Write(append(reply, body...)); err != nil {
				return nil, err
			}
		case ofptMultipartRep:
			// type, flags, pad[4], then packet_count, byte_count,
			// flow_count, pad[4].
			if xid < 1 || int(xid) > len(qs) || len(body) < 8+20 || binary.BigEndian.Uint16(body) != ofpmpAggregate {
				continue
			}
			if binary.BigEndian.Uint16(body[2:])&ofpmpfReplyMore != 0 {
				return nil, errors.New("aggregate reply in parts")
			}
			out[xid-1] = int(binary.BigEndian.Uint32(body[8+16:]))
			pending--
		}
	}
	if !hello {
		return nil, errors.New("no hello from the switch")
	}
	return out, nil
}

func ofHeader(b []byte, typ uint8, length int, xid uint32) []byte {
	b = append(b, ofVersion13, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(length))
	return binary.BigEndian.AppendUint32(b, xid)
}

// aggregateRequest appends an OFPMP_AGGREGATE multipart request: header,
// multipart type and flags, then ofp_aggregate_stats_request with an
// empty OXM match.
func aggregateRequest(b []byte, xid uint32, q flowQuery) []byte {
	const length = ofHeaderLen + 8 + 32 + 8
	b = ofHeader(b, ofptMultipartReq, length, xid)
	b = binary.BigEndian.AppendUint16(b, ofpmpAggregate)
	b = binary.BigEndian.AppendUint16(b, 0)       // flags
	b = append(b, 0, 0, 0, 0)                     // pad
	b = append(b, q.table, 0, 0, 0)               // table_id, pad[3]
	b = binary.BigEndian.AppendUint32(b, ofppAny) // out_port
	b = binary.BigEndian.AppendUint32(b, ofpgAny) // out_group
	b = append(b, 0, 0, 0, 0)                     // pad2[4]
	b = binary.BigEndian.AppendUint64(b, q.cookie)
	b = binary.BigEndian.AppendUint64(b, q.mask)
	// ofp_match: OXM type, length 4 (no fields), padded to 8.
	b = binary.BigEndian.AppendUint16(b, ofpmtOXM)
	b = binary.BigEndian.AppendUint16(b, 4)
	return append(b, 0, 0, 0, 0)
}

// readMsg reads one OpenFlow message and returns its type, xid and body.
func readMsg(r io.Reader) (uint8, uint32, []byte, error) {
	var h [ofHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, 0, nil, err
	}
	n := int(binary.BigEndian.Uint16(h[2:]))
	if n < ofHeaderLen {
		return 0, 0, nil, fmt.Errorf("openflow message of length %d", n)
	}
	body := make([]byte, n-ofHeaderLen)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, 0, nil, err
	}
	if h[0] != ofVersion13 && h[1] != ofptHello && h[1] != ofptError {
		return 0, 0, nil, fmt.Errorf("switch speaks OpenFlow version 0x%02x, want 1.3", h[0])
	}
	return h[1], binary.BigEndian.Uint32(h[4:]), body, nil
}
