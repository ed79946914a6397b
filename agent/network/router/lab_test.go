package router_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/agent/network/router"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/netspec"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// rlab is one simulated host (from nettest) with tenant networks and
// endpoints made by the linuxbridge and endpoint drivers, an external
// bridge with one external endpoint on 203.0.113.100, and routers.
type rlab struct {
	lab     *nettest.Lab
	h       *nettest.Host
	agent   *nettest.Agent
	ext     string // namespace of the external endpoint
	nets    []network.Network
	ports   []network.Port
	eps     map[string]string // port ID -> endpoint namespace
	routers []netspec.Router
}

const (
	extBridge = "sext0"
	extIP     = "203.0.113.100"
	tenantGW  = "10.1.1.1"
)

var (
	pfx = netip.MustParsePrefix
	adr = netip.MustParseAddr
)

// newRLab makes projects proj-a (VNI 5001) and, when two, proj-b (VNI
// 6001), both 10.1.1.0/24, with the given endpoints ("a1" on proj-a with
// 10.1.1.<host>), and applies the L2 drivers.
func newRLab(t *testing.T, eps map[string]string) *rlab {
	t.Helper()
	return newRLabOn(t, "linuxbridge", eps)
}

// newRLabOn is newRLab on a host running L2 driver driver.
func newRLabOn(t *testing.T, driver string, eps map[string]string) *rlab {
	t.Helper()
	lab := nettest.NewLabWith(t, 1, driver)
	l := &rlab{lab: lab, h: lab.Hosts[0], eps: map[string]string{}}
	l.agent = nettest.NewAgent(t, l.h)
	sub := network.Subnet{ID: "s", CIDR: pfx("10.1.1.0/24"), Gateway: adr(tenantGW)}
	l.nets = []network.Network{{ID: "proj-a", VNI: 5001, Subnets: []network.Subnet{sub}}, {ID: "proj-b", VNI: 6001, Subnets: []network.Subnet{sub}}}
	i := 0
	for id, ip := range eps {
		i++
		netID := "proj-" + id[:1]
		l.ports = append(l.ports, network.Port{ID: id, NetworkID: netID, Host: l.h.Name, MAC: nettest.MAC(i), IPs: []netip.Addr{adr(ip)}})
	}
	l.agent.Set(t, l.l2State())
	for _, p := range l.ports {
		ns := l.agent.EP.Namespace(network.Endpoint{PortID: p.ID})
		l.eps[p.ID] = ns
		run(t, ns, "ip", "route", "replace", "default", "via", tenantGW)
	}
	l.makeExternal(t)
	return l
}

func (l *rlab) l2State() network.HostState {
	st := l.agent.Bind(l.lab.HostState(l.h, l.nets, l.ports))
	for _, p := range l.ports {
		st.LocalEndpoints = append(st.LocalEndpoints, network.Endpoint{PortID: p.ID, IfName: "eth0", Addr: netip.PrefixFrom(p.IPs[0], 24)})
	}
	return st
}

// state is the host state with the lab's routers.
func (l *rlab) state() network.HostState {
	st := l.l2State()
	st.Routers = l.routers
	return st
}

// makeExternal makes the external bridge in the host namespace and the
// external endpoint's namespace on it.
func (l *rlab) makeExternal(t *testing.T) {
	t.Helper()
	hh, err := netnsutil.Handle(l.h.NS)
	must(t, err)
	defer hh.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: extBridge}}
	must(t, hh.LinkAdd(br))
	must(t, hh.LinkSetUp(br))
	l.ext = l.lab.Prefix + "ext"
	must(t, netnsutil.Create(l.ext))
	target, err := netns.GetFromPath(netnsutil.Path(l.ext))
	must(t, err)
	defer target.Close()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "sxe0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(target)}
	must(t, hh.LinkAdd(v))
	must(t, hh.LinkSetMaster(v, br))
	must(t, hh.LinkSetUp(v))
	run(t, l.ext, "ip", "link", "set", "lo", "up")
	run(t, l.ext, "ip", "addr", "add", extIP+"/24", "dev", "eth0")
	run(t, l.ext, "ip", "link", "set", "eth0", "up")
}

// newRouter is router id of project p with gateway .gw and SNAT on.
func newRouter(id, project string, gw byte) netspec.Router {
	return netspec.Router{
		ID: id, Project: project, SNAT: true,
		Gateway: &netspec.Gateway{NetworkID: "ext", Bridge: extBridge,
			Addr: netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, gw}), 24), NextHop: adr("203.0.113.1")},
		Interfaces: []netspec.Interface{{ID: "if-" + project, NetworkID: project, Addr: pfx(tenantGW + "/24")}},
	}
}

// driver makes a fresh router driver, as a new agent process would.
func (l *rlab) driver(t *testing.T) *router.Driver {
	t.Helper()
	d, err := router.New(router.Config{NetNS: l.h.NS, NSPrefix: l.h.Prefix + "r-", Logger: nettest.Logger(t)})
	must(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

func (l *rlab) set(t *testing.T, d *router.Driver) {
	t.Helper()
	if err := d.Set(context.Background(), l.state()); err != nil {
		t.Fatal(err)
	}
}

// dump is `nft list table` of router id's table.
func (l *rlab) dump(t *testing.T, d *router.Driver, id string) string {
	t.Helper()
	return run(t, d.Namespace(id), "nft", "list", "table", "ip", router.TableName)
}

func run(t *testing.T, ns string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := nettest.Run(ctx, ns, args[0], args[1:]...)
	must(t, err)
	return out
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// serve listens on addr inside ns; each connection first gets a line
// "from <remote IP>", then every line it sends is echoed.
func serve(t *testing.T, ns, addr string) {
	t.Helper()
	var ln net.Listener
	must(t, netnsutil.Do(ns, func() (err error) { ln, err = net.Listen("tcp4", addr); return err }))
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
				fmt.Fprintf(c, "from %s\n", host)
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s\n", sc.Text())
				}
			}()
		}
	}()
}

// conn is a TCP connection made inside a namespace.
type conn struct {
	c  net.Conn
	rd *bufio.Reader
}

// dial connects from ns to addr within 2 s and returns the connection and
// the source address the server saw.
func dial(ns, addr string) (*conn, string, error) {
	var c net.Conn
	err := netnsutil.Do(ns, func() (err error) { c, err = net.DialTimeout("tcp4", addr, 2*time.Second); return err })
	if err != nil {
		return nil, "", err
	}
	cc := &conn{c: c, rd: bufio.NewReader(c)}
	line, err := cc.line()
	if err != nil {
		c.Close()
		return nil, "", err
	}
	return cc, strings.TrimPrefix(line, "from "), nil
}

func (c *conn) line() (string, error) {
	c.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	s, err := c.rd.ReadString('\n')
	return strings.TrimSpace(s), err
}

// echo sends one line and reports whether it came back within 2 s.
func (c *conn) echo(msg string) error {
	if _, err := fmt.Fprintf(c.c, "%s\n", msg); err != nil {
		return err
	}
	got, err := c.line()
	if err == nil && got != msg {
		err = fmt.Errorf("echo %q, got %q", msg, got)
	}
	return err
}

// seenAs dials ext from ns and returns the source the external endpoint saw.
func seenAs(t *testing.T, ns string) string {
	t.Helper()
	c, src, err := dial(ns, extIP+":9000")
	if err != nil {
		t.Fatalf("from %s to external endpoint: %v", ns, err)
	}
	c.c.Close()
	return src
}

func requireRoot(t *testing.T) {
	t.Helper()
	nettest.RequireRoot(t)
}
