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

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/netprobe"
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
	fmt.Fprintln(tw, "ENDPOINT\tHOST\tNAMESPACE\tDHCP ADDRESS")
	for _, e := range eps {
		got, err := netprobe.DHCP(ctx, e.Namespace, "eth0", scratch)
		if err != nil || got != e.IP {
			return fmt.Errorf("endpoint %s/%s: DHCP gave %q, want %s: %v", e.Project, e.Port, got, e.IP, err)
		}
		fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\n", e.Project, e.Port, e.Host, e.Namespace, got)
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
	if len(bad) > 0 {
		return fmt.Errorf("tenant traffic is wrong: %s", strings.Join(bad, "; "))
	}
	return nil
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
