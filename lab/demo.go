package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/strata-infra/strata/internal/netprobe"
	"github.com/strata-infra/strata/pkg/api"
)

// Endpoint is an endpoint port of the lab: a namespace standing in for an
// instance, plugged by its host's agent.
type Endpoint struct {
	Project, Port, Host, Namespace, IP, MAC string
}

// Endpoints lists every endpoint port bound to a lab host.
func (l *Lab) Endpoints(ctx context.Context) ([]Endpoint, error) {
	c, err := l.Client()
	if err != nil {
		return nil, err
	}
	var projects []api.Resource
	if err := c.Do(ctx, http.MethodGet, "/v1/projects", nil, &projects); err != nil {
		return nil, err
	}
	var out []Endpoint
	for _, p := range projects {
		var ports []api.Resource
		if err := c.Do(ctx, http.MethodGet, "/v1/projects/"+p.Name+"/ports", nil, &ports); err != nil {
			return nil, err
		}
		for _, r := range ports {
			var ps api.PortSpec
			_ = json.Unmarshal(r.Spec, &ps)
			i, err := strconv.Atoi(strings.TrimPrefix(ps.Host, "h"))
			if ps.Owner != api.PortOwnerEndpoint || err != nil || i < 1 || i > l.Hosts || len(ps.FixedIPs) == 0 {
				continue
			}
			out = append(out, Endpoint{Project: p.Name, Port: r.Name, Host: ps.Host,
				Namespace: l.EndpointNamespace(i, p.Name, r.Name), IP: ps.FixedIPs[0].IP, MAC: ps.MAC})
		}
	}
	return out, nil
}

// DemoTraffic shows the tenant networks at work: every endpoint asks DHCP
// for its address, then pings every other endpoint. It prints the matrix
// and fails when a project cannot reach itself or reaches another one.
func (l *Lab) DemoTraffic(ctx context.Context, w io.Writer) error {
	eps, err := l.Endpoints(ctx)
	if err != nil || len(eps) == 0 {
		return err
	}
	scratch, err := os.MkdirTemp("", "strata-lab-dhcp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tHOST (L2 DRIVER)\tNAMESPACE\tDHCP ADDRESS")
	for _, e := range eps {
		got, err := netprobe.DHCP(ctx, e.Namespace, "eth0", scratch)
		if err != nil || got != e.IP {
			return fmt.Errorf("endpoint %s/%s: DHCP gave %q, want %s: %v", e.Project, e.Port, got, e.IP, err)
		}
		fmt.Fprintf(tw, "%s/%s\t%s (%s)\t%s\t%s\n", e.Project, e.Port, e.Host, l.hostL2Driver(e.Host), e.Namespace, got)
	}
	tw.Flush()
	fmt.Fprintln(w)
	header := "FROM \\ TO"
	for _, d := range eps {
		header += "\t" + d.Project + "/" + d.Port + " " + d.IP
	}
	fmt.Fprintln(tw, header)
	var bad []string
	for _, s := range eps {
		row := s.Project + "/" + s.Port
		for _, d := range eps {
			if s == d {
				row += "\t-"
				continue
			}
			if s.IP == d.IP {
				row += "\t(its own address)"
				continue
			}
			_, recv, _ := netprobe.Ping(ctx, s.Namespace, d.IP, 1, 100*time.Millisecond)
			// The same address may exist in both tenants: what matters is
			// whose MAC answered ARP, and that it is the sender's tenant.
			owner := ownerOf(eps, neighMAC(ctx, s.Namespace, d.IP))
			cell := "no reply"
			switch {
			case recv > 0 && owner != nil:
				cell = "reply from " + owner.Project + "/" + owner.Port
				if owner.Project != s.Project {
					bad = append(bad, fmt.Sprintf("%s/%s got a reply from %s/%s", s.Project, s.Port, owner.Project, owner.Port))
				}
			case recv > 0:
				cell = "reply"
			}
			if d.Project == s.Project && (recv == 0 || owner == nil || *owner != d) {
				bad = append(bad, fmt.Sprintf("%s/%s cannot reach %s/%s", s.Project, s.Port, d.Project, d.Port))
			}
			row += "\t" + cell
		}
		fmt.Fprintln(tw, row)
	}
	tw.Flush()
	bad = append(bad, l.demoOutside(ctx, w, eps)...)
	if len(bad) > 0 {
		return fmt.Errorf("tenant traffic is wrong: %s", strings.Join(bad, "; "))
	}
	return nil
}

// demoOutside shows the external network at work: endpoints behind a
// router reach the outside (SNAT), and the outside reaches floating IPs.
func (l *Lab) demoOutside(ctx context.Context, w io.Writer, eps []Endpoint) []string {
	c, err := l.Client()
	if err != nil {
		return []string{err.Error()}
	}
	routed := map[string]bool{} // projects with a router that has a gateway
	var fips []struct{ project, name, ip, port string }
	for _, e := range eps {
		if routed[e.Project] {
			continue
		}
		var routers, fs []api.Resource
		_ = c.Do(ctx, http.MethodGet, "/v1/projects/"+e.Project+"/routers", nil, &routers)
		for _, r := range routers {
			var rs api.RouterSpec
			_ = json.Unmarshal(r.Spec, &rs)
			routed[e.Project] = routed[e.Project] || rs.ExternalNetwork != ""
		}
		_ = c.Do(ctx, http.MethodGet, "/v1/projects/"+e.Project+"/floatingips", nil, &fs)
		for _, f := range fs {
			var s api.FloatingIPSpec
			_ = json.Unmarshal(f.Spec, &s)
			if s.Port != "" {
				fips = append(fips, struct{ project, name, ip, port string }{e.Project, f.Name, s.IP, s.Port})
			}
		}
	}
	if len(routed) == 0 && len(fips) == 0 {
		return nil
	}
	outside := l.ExternalAddr().Addr().String()
	fmt.Fprintf(w, "\nThe outside world (namespace %s, %s):\n", l.ExternalNamespace(), outside)
	var bad []string
	for _, e := range eps {
		if !routed[e.Project] {
			continue
		}
		_, recv, _ := netprobe.Ping(ctx, e.Namespace, outside, 1, 100*time.Millisecond)
		fmt.Fprintf(w, "  %s/%s -> outside %s: %s\n", e.Project, e.Port, outside, replyWord(recv))
		if recv == 0 {
			bad = append(bad, fmt.Sprintf("%s/%s cannot reach the outside", e.Project, e.Port))
		}
	}
	for _, f := range fips {
		_, recv, _ := netprobe.Ping(ctx, l.ExternalNamespace(), f.ip, 1, 100*time.Millisecond)
		fmt.Fprintf(w, "  outside -> floating IP %s (%s/%s): %s\n", f.ip, f.project, f.port, replyWord(recv))
		if recv == 0 {
			bad = append(bad, fmt.Sprintf("the outside cannot reach floating IP %s", f.ip))
		}
	}
	return bad
}

func replyWord(recv int) string {
	if recv > 0 {
		return "reply"
	}
	return "no reply"
}

func ownerOf(eps []Endpoint, mac string) *Endpoint {
	for i := range eps {
		if mac != "" && eps[i].MAC == mac {
			return &eps[i]
		}
	}
	return nil
}

// neighMAC is the MAC ns has learnt for ip, "" when none.
func neighMAC(ctx context.Context, ns, ip string) string {
	out, _ := netprobe.Run(ctx, ns, "ip", "neigh", "show", ip)
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// hostL2Driver is the L2 driver of the host named name ("h2").
func (l *Lab) hostL2Driver(name string) string {
	i, _ := strconv.Atoi(strings.TrimPrefix(name, "h"))
	return l.L2Driver(i)
}
