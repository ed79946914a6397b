package lab

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/strata-infra/strata/coordinator/tlsca"
	"github.com/strata-infra/strata/internal/netprobe"
	"github.com/strata-infra/strata/pkg/gossip"
)

// The security step of the demo (issue 11): who is kept out. The API
// speaks only TLS under the lab's own CA; the gossip pool refuses a
// member without the key and one with the key that claims a host's name;
// an endpoint that forges its source address or its MAC is dropped on its
// own link, while its own traffic passes.

// DemoSecurity shows each of those on the running lab; it fails when any
// is let in, or when the legitimate traffic beside it does not pass.
func (l *Lab) DemoSecurity(ctx context.Context, w io.Writer) error {
	if err := l.demoTLS(ctx, w); err != nil {
		return err
	}
	if err := l.demoGossip(ctx, w); err != nil {
		return err
	}
	return l.demoPortSecurity(ctx, w)
}

func (l *Lab) demoTLS(ctx context.Context, w io.Writer) error {
	fp, err := tlsca.Fingerprint(l.CAFile())
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  API %s: TLS, CA %s (sha256 %s…)\n", l.Endpoint(), l.CAFile(), fp[:16])
	hc := &http.Client{Timeout: 5 * time.Second}
	plain := "http" + strings.TrimPrefix(l.Endpoint(), "https") + "/v1/status"
	resp, err := hc.Get(plain)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			return fmt.Errorf("plain HTTP to the API answered %d", resp.StatusCode)
		}
		err = fmt.Errorf("%s", resp.Status)
	}
	fmt.Fprintf(w, "  plain HTTP: refused (%v)\n", err)
	hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	if resp, err = hc.Get(l.Endpoint() + "/v1/status"); err == nil {
		resp.Body.Close()
		return fmt.Errorf("a client that does not pin the lab's CA was served")
	}
	fmt.Fprintf(w, "  TLS without the lab's CA pinned: refused (%v)\n", shortErr(err))
	return nil
}

// freeUDPPort is a port free for both TCP and UDP on addr (memberlist
// binds both).
func freeUDPPort(addr netip.Addr) (int, error) {
	for range 20 {
		tl, err := net.Listen("tcp", net.JoinHostPort(addr.String(), "0"))
		if err != nil {
			return 0, err
		}
		port := tl.Addr().(*net.TCPAddr).Port
		ul, err := net.ListenPacket("udp", net.JoinHostPort(addr.String(), strconv.Itoa(port)))
		tl.Close()
		if err == nil {
			ul.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port on %s", addr)
}

func (l *Lab) demoGossip(ctx context.Context, w io.Writer) error {
	join := []string{net.JoinHostPort(l.BridgeAddr().String(), "7946")}
	port, err := freeUDPPort(l.BridgeAddr())
	if err != nil {
		return err
	}
	mc := memberlist.DefaultLocalConfig()
	mc.Name, mc.BindAddr, mc.BindPort, mc.AdvertisePort = "keyless", l.BridgeAddr().String(), port, port
	mc.Logger = log.New(io.Discard, "", 0)
	keyless, err := memberlist.Create(mc)
	if err != nil {
		return err
	}
	_, err = keyless.Join(join)
	keyless.Shutdown()
	if err == nil {
		return fmt.Errorf("a member without the gossip key joined the pool")
	}
	fmt.Fprintf(w, "  gossip member without the key: refused at join (%v)\n", shortErr(err))

	// With the key, claiming h1's name (and a VTEP and capacity of its
	// choosing) from another address.
	key, err := gossip.LoadKeyFile(l.Dir + "/gossip.key")
	if err != nil {
		return err
	}
	if port, err = freeUDPPort(l.BridgeAddr()); err != nil {
		return err
	}
	imp, err := gossip.New(gossip.Config{Name: "h1", BindAddr: l.BridgeAddr().String(), BindPort: port, Key: key, Profile: gossip.ProfileLocal,
		Meta: gossip.Meta{Role: gossip.RoleAgent, Zone: "lab", VTEP: l.nth(99), VCPUs: 4096, RAMMiB: 1 << 22}})
	if err != nil {
		return err
	}
	defer imp.Shutdown()
	_, _ = imp.Join(join) // refused at every alive message: it may hear no one back
	from := net.JoinHostPort(l.BridgeAddr().String(), strconv.Itoa(port))
	deadline := time.Now().Add(60 * time.Second)
	for {
		if line := refusal(l.logFile("coordinator"), from); line != "" {
			fmt.Fprintf(w, "  gossip member with the key claiming h1 from %s: refused by the coordinator (%s)\n", from, line)
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the coordinator logged no refusal of the impostor h1 at %s", from)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var reasonRE = regexp.MustCompile(`"reason":"((?:[^"\\]|\\.)*)"`)

// refusal is the reason the coordinator's log gives for refusing the
// gossip member at addr ("" if none).
func refusal(logFile, addr string) string {
	b, _ := os.ReadFile(logFile)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "refused gossip member") && strings.Contains(line, addr) {
			if m := reasonRE.FindStringSubmatch(line); m != nil {
				return strings.ReplaceAll(m[1], `\"`, `"`)
			}
			return "refused"
		}
	}
	return ""
}

func shortErr(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if i := strings.LastIndex(s, ": "); i >= 0 && len(s) > 90 {
		s = s[i+2:]
	}
	return s
}

func (l *Lab) demoPortSecurity(ctx context.Context, w io.Writer) error {
	eps, err := l.Endpoints(ctx)
	if err != nil {
		return err
	}
	var src, dst *Endpoint
	for i := range eps {
		for j := range eps {
			if i != j && eps[i].Project == eps[j].Project && eps[i].IP != "" && eps[j].IP != "" && eps[i].IP != eps[j].IP && src == nil {
				src, dst = &eps[i], &eps[j]
			}
		}
	}
	if src == nil {
		return fmt.Errorf("no two endpoints in one project to show port security with")
	}
	scratch, err := os.MkdirTemp("", "strata-lab-dhcp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	for _, e := range []*Endpoint{src, dst} {
		if _, err := netprobe.DHCP(ctx, e.Namespace, "eth0", scratch); err != nil {
			return fmt.Errorf("endpoint %s/%s: DHCP: %w", e.Project, e.Port, err)
		}
	}
	a, err := netip.ParseAddr(src.IP)
	if err != nil {
		return err
	}
	b := a.As4()
	b[3] = 250
	forged := netip.AddrFrom4(b).String()
	ping := func(from string) int {
		args := []string{"ping", "-c", "3", "-i", "0.3", "-W", "1"}
		if from != "" {
			args = append(args, "-I", from)
		}
		out, _ := netprobe.Run(ctx, src.Namespace, "busybox", append(args, dst.IP)...)
		if m := regexp.MustCompile(`(\d+) packets received`).FindStringSubmatch(out); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
		return 0
	}
	what := fmt.Sprintf("%s/%s (%s) -> %s/%s (%s)", src.Project, src.Port, src.IP, dst.Project, dst.Port, dst.IP)
	legit := 0
	for try := 0; try < 5 && legit == 0; try++ {
		legit = ping("")
	}
	if legit == 0 {
		return fmt.Errorf("%s: no reply from its own address", what)
	}
	fmt.Fprintf(w, "  %s from its own address and MAC: %d of 3 replies\n", what, legit)

	ipCmd := func(args ...string) error {
		_, err := netprobe.Run(ctx, src.Namespace, "ip", args...)
		return err
	}
	if err := ipCmd("addr", "add", forged+"/32", "dev", "eth0"); err != nil {
		return err
	}
	n := ping(forged)
	_ = ipCmd("addr", "del", forged+"/32", "dev", "eth0")
	if n > 0 {
		return fmt.Errorf("%s from forged source %s: %d replies", what, forged, n)
	}
	fmt.Fprintf(w, "  the same from a forged source address %s: 0 of 3 replies (dropped on its link)\n", forged)

	if err := ipCmd("link", "set", "eth0", "address", "02:5e:c0:de:ad:01"); err != nil {
		return err
	}
	n = ping("")
	if err := ipCmd("link", "set", "eth0", "address", src.MAC); err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%s from forged MAC 02:5e:c0:de:ad:01: %d replies", what, n)
	}
	fmt.Fprintf(w, "  the same from a forged MAC 02:5e:c0:de:ad:01: 0 of 3 replies (dropped on its link)\n")
	return nil
}
