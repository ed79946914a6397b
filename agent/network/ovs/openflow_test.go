package ovs

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// TestCountFlowsWire: the aggregate requests are OpenFlow 1.3's layout
// (checked field by field), an echo request in between is answered, and
// replies that come out of order land on their own query.
func TestCountFlowsWire(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "br.mgmt")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	errc := make(chan error, 1)
	go func() { errc <- fakeSwitch(l) }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := ofctl{target: "unix:" + sock}
	n, err := o.CountFlows(ctx, allFlows, genFlows(TableCanary, 7))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if n[0] != 4600 || n[1] != 1 {
		t.Errorf("counts %v, want [4600 1]", n)
	}
	if _, err := (ofctl{target: "unix:" + filepath.Join(dir, "none")}).CountFlows(ctx, allFlows); err == nil {
		t.Error("no socket: no error")
	}
}

type fakeErr string

func (e fakeErr) Error() string { return string(e) }

// fakeSwitch answers one CountFlows of two queries as ovs-vswitchd would,
// with an echo request first and the replies in reverse order.
func fakeSwitch(l net.Listener) error {
	c, err := l.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	typ, _, _, err := readMsg(c)
	if err != nil || typ != ofptHello {
		return fakeErr("want a hello first")
	}
	var reqs [][]byte
	for range 2 {
		typ, xid, body, err := readMsg(c)
		if err != nil {
			return err
		}
		if typ != ofptMultipartReq || int(xid) != len(reqs)+1 || len(body) != 48 {
			return fakeErr("not an aggregate request of 56 bytes")
		}
		reqs = append(reqs, body)
	}
	// Request 1: every table, any cookie; request 2: table 250, cookie of
	// generation 7, exact.
	want := func(b []byte, table uint8, cookie, mask uint64) bool {
		be := binary.BigEndian
		return be.Uint16(b) == ofpmpAggregate && be.Uint16(b[2:]) == 0 && b[8] == table &&
			be.Uint32(b[12:]) == ofppAny && be.Uint32(b[16:]) == ofpgAny &&
			be.Uint64(b[24:]) == cookie && be.Uint64(b[32:]) == mask &&
			bytes.Equal(b[40:], []byte{0, 1, 0, 4, 0, 0, 0, 0})
	}
	if !want(reqs[0], 0xff, 0, 0) || !want(reqs[1], TableCanary, Cookie(7), ^uint64(0)) {
		return fakeErr("requests' fields are wrong")
	}
	reply := func(xid, count uint32) []byte {
		b := ofHeader(nil, ofptMultipartRep, 8+8+24, xid)
		b = binary.BigEndian.AppendUint16(b, ofpmpAggregate)
		b = append(b, 0, 0, 0, 0, 0, 0)
		b = binary.BigEndian.AppendUint64(b, 1) // packets
		b = binary.BigEndian.AppendUint64(b, 2) // bytes
		b = binary.BigEndian.AppendUint32(b, count)
		return append(b, 0, 0, 0, 0)
	}
	out := ofHeader(nil, ofptHello, 8, 0)
	out = append(ofHeader(out, ofptEchoRequest, 12, 99), 'p', 'i', 'n', 'g')
	if _, err := c.Write(out); err != nil {
		return err
	}
	typ, xid, body, err := readMsg(c)
	if err != nil || typ != ofptEchoReply || xid != 99 || string(body) != "ping" {
		return fakeErr("echo request not answered")
	}
	_, err = c.Write(append(reply(2, 1), reply(1, 4600)...))
	return err
}
