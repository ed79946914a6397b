package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/strata-infra/strata/internal/netprobe"
	"github.com/strata-infra/strata/pkg/netspec"
)

// Names of the nft tables the agent compiles firewalls into (router and
// secgroup packages; the lab does not import the agent).
const (
	routerTable = "strata_router"
	sgTable     = "strata_sg"
)

// nftTable is what the demo tells of one nft table: rules per chain and
// elements per set or map.
type nftTable struct {
	Rules map[string]int
	Elems map[string]int
	Maps  map[string]bool
}

// listTable reads table family/name in namespace ns with nft's JSON
// listing.
func listTable(ctx context.Context, ns, family, name string) (nftTable, error) {
	out, err := netprobe.Run(ctx, ns, "nft", "-j", "list", "table", family, name)
	if err != nil {
		return nftTable{}, err
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nftTable{}, fmt.Errorf("nft -j list table %s %s in %q: %w", family, name, ns, err)
	}
	t := nftTable{Rules: map[string]int{}, Elems: map[string]int{}, Maps: map[string]bool{}}
	for _, obj := range doc.Nftables {
		for kind, raw := range obj {
			var o struct {
				Name  string            `json:"name"`
				Chain string            `json:"chain"`
				Elem  []json.RawMessage `json:"elem"`
			}
			if err := json.Unmarshal(raw, &o); err != nil {
				continue
			}
			switch kind {
			case "rule":
				t.Rules[o.Chain]++
			case "set", "map":
				t.Elems[o.Name] = len(o.Elem)
				t.Maps[o.Name] = kind == "map"
			}
		}
	}
	return t, nil
}

// DemoFirewalls shows the firewalls as the kernel holds them: for each
// router namespace on a lab host, each firewall chain's rules as nft
// lists them and the verdict maps they look up, with their element
// counts; for each host, how many rules, sets and elements its security
// group table holds, and its largest maps.
func (l *Lab) DemoFirewalls(ctx context.Context, w io.Writer) error {
	shown := 0
	for i := 1; i <= l.Hosts; i++ {
		prefix := netspec.RouterNamespacePrefix(l.NetNSPrefix(i))
		entries, _ := os.ReadDir("/run/netns")
		for _, e := range entries {
			ns := e.Name()
			if !strings.HasPrefix(ns, prefix) {
				continue
			}
			t, err := listTable(ctx, ns, "ip", routerTable)
			if err != nil {
				return err
			}
			for _, chain := range []string{"fw_ingress", "fw_egress"} {
				if _, ok := t.Rules[chain]; !ok {
					continue
				}
				out, err := netprobe.Run(ctx, ns, "nft", "list", "chain", "ip", routerTable, chain)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "router %s on %s, chain %s: %d nft rules\n", strings.TrimPrefix(ns, prefix), l.HostName(i), chain, t.Rules[chain])
				for _, line := range strings.Split(out, "\n") {
					line = strings.TrimSpace(line)
					if line == "" || strings.HasPrefix(line, "table") || strings.HasPrefix(line, "chain") || line == "}" {
						continue
					}
					fmt.Fprintf(w, "    %s\n", line)
					for _, f := range strings.Fields(line) {
						if n, ok := t.Elems[strings.TrimPrefix(f, "@")]; ok && strings.HasPrefix(f, "@") {
							fmt.Fprintf(w, "      %s: %s\n", f, elements(n))
						}
					}
				}
				shown++
			}
		}
		t, err := listTable(ctx, l.Namespace(i), "inet", sgTable)
		if err != nil {
			if strings.Contains(err.Error(), "No such file") {
				continue // no filtered port on this host
			}
			return err
		}
		rules, elems, maps := 0, 0, 0
		for _, n := range t.Rules {
			rules += n
		}
		var names []string
		for name, n := range t.Elems {
			elems += n
			if t.Maps[name] {
				maps++
			}
			names = append(names, name)
		}
		sort.Slice(names, func(a, b int) bool {
			if t.Elems[names[a]] != t.Elems[names[b]] {
				return t.Elems[names[a]] > t.Elems[names[b]]
			}
			return names[a] < names[b]
		})
		fmt.Fprintf(w, "security groups on %s (table inet %s): %d chains, %d rules, %d sets and maps (%d of them verdict or data maps), %d elements\n",
			l.HostName(i), sgTable, len(t.Rules), rules, len(t.Elems), maps, elems)
		for _, name := range names[:min(4, len(names))] {
			kind := "set"
			if t.Maps[name] {
				kind = "map"
			}
			fmt.Fprintf(w, "    %s @%s: %s\n", kind, name, elements(t.Elems[name]))
		}
		shown++
	}
	if shown == 0 {
		return fmt.Errorf("no compiled firewall or security group table on any lab host")
	}
	return nil
}

func elements(n int) string {
	if n == 1 {
		return "1 element"
	}
	return fmt.Sprintf("%d elements", n)
}
