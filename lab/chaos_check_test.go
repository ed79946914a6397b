package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/pidfile"
)

// chaosKinds are the kinds the writers change, plural names.
var chaosKinds = []string{"networks", "subnets", "securitygroups", "ports", "routers", "floatingips"}

// chaosPort is an endpoint port the writers left in place, as the API has it.
type chaosPort struct {
	name, network, ip, mac string
	host                   int
}

func listChaos(t *testing.T, l *Lab, plural string) []api.Resource {
	t.Helper()
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	var rs []api.Resource
	if err := c.Do(context.Background(), http.MethodGet, apiclient.ResourcePath(plural, "chaos", ""), nil, &rs); err != nil {
		t.Fatal(err)
	}
	return rs
}

// chaosCheckApplied waits until every host reports every resource of its
// plan applied at the resource's epoch or later, and none in error: the
// desired state is what the hosts say they applied.
func chaosCheckApplied(t *testing.T, l *Lab) {
	t.Helper()
	var bad []string
	err := healWithin(chaosFinalBound, func() error {
		bad = nil
		n := 0
		for _, plural := range chaosKinds {
			for _, r := range listChaos(t, l, plural) {
				if r.Status != nil && r.Status.State == api.ResourceError {
					bad = append(bad, fmt.Sprintf("%s: %s on %s: %s", r.Key(), r.Status.State, r.Status.Host, r.Status.Message))
				}
				for _, h := range r.Hosts {
					n++
					if h.State != api.ResourceApplied || h.Epoch < r.Epoch {
						bad = append(bad, fmt.Sprintf("%s (epoch %d): %s on %s at epoch %d %s", r.Key(), r.Epoch, h.State, h.Host, h.Epoch, h.Message))
					}
				}
			}
		}
		if len(bad) > 0 {
			return fmt.Errorf("%d not applied", len(bad))
		}
		t.Logf("every host reports every resource of its plan applied (%d resource-host pairs)", n)
		return nil
	})
	if err != nil {
		t.Errorf("hosts did not report everything applied: %v:\n%s", err, strings.Join(bad, "\n"))
	}
}

// chaosCheckWrites compares every resource of the project with the
// writers' last acknowledged writes: each is there (or gone) as last
// acknowledged, the shared group holds every writer's acknowledged rules,
// and nothing exists that no writer made, but what the coordinator makes
// (DHCP and router ports). It returns the endpoint ports.
func chaosCheckWrites(t *testing.T, l *Lab, ws []*chaosWriter) []chaosPort {
	t.Helper()
	got := map[string]api.Resource{}
	for _, plural := range chaosKinds {
		for _, r := range listChaos(t, l, plural) {
			got[plural+"/"+r.Name] = r
		}
	}
	var out []chaosPort
	checked := 0
	for _, w := range ws {
		for k, o := range w.objs {
			r, ok := got[k]
			switch {
			case o.spec == nil && ok:
				t.Errorf("%s: deleted (acknowledged) but still there", k)
			case o.spec != nil && !ok:
				t.Errorf("%s: written (acknowledged) but missing", k)
			case o.spec != nil && !covers(o.spec, r.Spec):
				t.Errorf("%s: stored %s, last acknowledged %v", k, r.Spec, o.spec)
			case o.spec != nil && o.plural == "ports":
				var s api.PortSpec
				_ = json.Unmarshal(r.Spec, &s)
				h, _ := strconv.Atoi(strings.TrimPrefix(s.Host, "h"))
				out = append(out, chaosPort{name: r.Name, network: s.Network, ip: s.FixedIPs[0].IP, mac: s.MAC, host: h})
			}
			checked++
			delete(got, k)
		}
	}
	if r, ok := got["securitygroups/shared"]; ok {
		var s api.SecurityGroupSpec
		_ = json.Unmarshal(r.Spec, &s)
		if g, want := ruleStrings(s.Rules), sharedRules(ws); !slices.Equal(g, want) {
			t.Errorf("shared security group rules %v, want the acknowledged %v", g, want)
		}
		delete(got, "securitygroups/shared")
	}
	for k, r := range got {
		var s api.PortSpec
		_ = json.Unmarshal(r.Spec, &s)
		if r.Kind == "port" && (s.Owner == api.PortOwnerDHCP || s.Owner == api.PortOwnerRouterInterface) {
			continue
		}
		t.Errorf("%s exists, but no writer's acknowledged write made it", k)
	}
	t.Logf("%d resources as last acknowledged (%d endpoint ports), the shared group's rules as acknowledged, nothing else", checked, len(out))
	return out
}

// chaosCheckHosts checks every port's namespace, FDB entries and DHCP
// lease, one dnsmasq per network, and that no namespace or endpoint link
// is left that the plan does not want, and no host entry but the lab's.
func chaosCheckHosts(t *testing.T, l *Lab, ports []chaosPort) {
	t.Helper()
	ctx := context.Background()
	wantNS := map[string]bool{l.ExternalNamespace(): true}
	for i := 1; i <= l.Hosts; i++ {
		wantNS[l.Namespace(i)] = true
	}
	macs := map[int]string{}
	for i := 1; i <= l.Hosts; i++ {
		macs[i] = fdb(t, l.Namespace(i))
	}
	onHost := map[int]int{}
	for _, p := range ports {
		ns := l.EndpointNamespace(p.host, "chaos", p.name)
		wantNS[ns] = true
		onHost[p.host]++
		got, err := nettest.DHCP(ctx, t, ns, "eth0")
		if err != nil || got != p.ip {
			t.Errorf("port %s: DHCP lease %q (%v), want %s", p.name, got, err, p.ip)
		}
		// Every other host with a port on the same network has its MAC.
		for _, q := range ports {
			if q.network == p.network && q.host != p.host && !strings.Contains(macs[q.host], p.mac) {
				t.Errorf("port %s (%s on h%d): not in the FDB of h%d", p.name, p.mac, p.host, q.host)
			}
		}
	}
	// DHCP: one dnsmasq per network, none stopped.
	nets := len(listChaos(t, l, "networks"))
	ds := dnsmasqs(l)
	if len(ds) != nets {
		t.Errorf("%d dnsmasq processes, want %d (one per network): %+v", len(ds), nets, ds)
	}
	for _, d := range ds {
		if d.state == "T" {
			t.Errorf("dnsmasq %d is left stopped", d.pid)
		}
	}
	names, err := netnsutil.List(l.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.Contains(n, "-dhcp-") || strings.Contains(n, "-r-") {
			continue // DHCP and router namespaces: compared with a fresh apply
		}
		if !wantNS[n] {
			t.Errorf("namespace %s is left over: the plan does not want it", n)
		}
	}
	for n := range wantNS {
		if !slices.Contains(names, n) {
			t.Errorf("namespace %s is missing", n)
		}
	}
	for i := 1; i <= l.Hosts; i++ {
		out, err := exec.Command("ip", "-n", l.Namespace(i), "-o", "link", "show").CombinedOutput()
		if err != nil {
			t.Fatalf("ip link in %s: %v", l.Namespace(i), err)
		}
		var veths []string
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], "sep-") {
				veths = append(veths, strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":"))
			}
		}
		if len(veths) != onHost[i] {
			t.Errorf("h%d has %d endpoint veths %v, want %d", i, len(veths), veths, onHost[i])
		}
	}
	var hs []api.Host
	stratactl(t, l, &hs, "hosts", "list")
	var hnames []string
	for _, h := range hs {
		hnames = append(hnames, h.Name+"="+h.State)
	}
	if strings.Join(hnames, ",") != "h1=alive,h2=alive,h3=alive" {
		t.Errorf("host entries %v, want h1..h3 alive and nothing else", hnames)
	}
}

// kernelStates is hostKernelState of every host.
func kernelStates(t *testing.T, l *Lab) map[int]map[string][]string {
	t.Helper()
	out := map[int]map[string][]string{}
	macs := portMACs(t, l)
	for i := 1; i <= l.Hosts; i++ {
		out[i] = hostKernelState(t, l, i, macs)
	}
	return out
}

// portMACs are the MACs of every port of the project, the ones the
// agents give links (the kernel picks the others).
func portMACs(t *testing.T, l *Lab) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, r := range listChaos(t, l, "ports") {
		var s api.PortSpec
		_ = json.Unmarshal(r.Spec, &s)
		out[strings.ToLower(s.MAC)] = true
	}
	return out
}

// chaosCheckFreshApply compares each host's kernel state after the chaos
// with what a fresh apply of the same desired state makes: every host is
// wiped (agent killed, its dnsmasqs killed, its namespaces and state dir
// removed, its host namespace made anew) and its agent started again.
// Anything left over, missing or different from a clean apply shows as a
// difference.
func chaosCheckFreshApply(t *testing.T, l *Lab, before map[int]map[string][]string) {
	t.Helper()
	for i := 1; i <= l.Hosts; i++ {
		if err := l.StopAgent(i, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		pidfile.KillAll(filepath.Join(l.Dir, l.HostName(i)))
		made, _ := filepath.Glob("/run/netns/" + l.NetNSPrefix(i) + "*")
		for _, ns := range append(made, l.Namespace(i)) {
			if err := ip("netns", "delete", filepath.Base(ns)); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.RemoveAll(filepath.Join(l.Dir, l.HostName(i))); err != nil {
			t.Fatal(err)
		}
	}
	// The outer veth ends go a moment after their namespaces.
	if err := healWithin(10*time.Second, func() error {
		for i := 1; i <= l.Hosts; i++ {
			for _, link := range []string{fmt.Sprintf("%sh%d", l.Short, i), fmt.Sprintf("%sx%d", l.Short, i)} {
				if linkExists(link) {
					return fmt.Errorf("%s still exists", link)
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := l.UpNetwork(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 1; i <= l.Hosts; i++ {
		if err := l.StartAgent(i); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= l.Hosts; i++ {
		if err := waitHostCaughtUp(l, i, start, true); err != nil {
			t.Fatalf("fresh apply: %v", err)
		}
	}
	if _, err := l.WaitStatus(context.Background(), chaosFinalBound, "fleet converged after the fresh apply", AllAliveAndConverged(3)); err != nil {
		t.Fatal(err)
	}
	chaosCheckApplied(t, l)
	t.Logf("fresh apply on wiped hosts converged in %s", time.Since(start).Round(time.Millisecond))
	lines := 0
	for i := 1; i <= l.Hosts; i++ {
		after := hostKernelState(t, l, i, portMACs(t, l))
		var keys []string
		for k := range before[i] {
			keys = append(keys, k)
		}
		for k := range after {
			if _, ok := before[i][k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			lines += len(after[k])
			if gone, extra := lineDiff(before[i][k], after[k]); len(gone) > 0 || len(extra) > 0 {
				t.Errorf("h%d %s after the chaos differs from a fresh apply:\n  only after the chaos:\n    %s\n  only in the fresh apply:\n    %s",
					i, k, strings.Join(gone, "\n    "), strings.Join(extra, "\n    "))
			}
		}
	}
	t.Logf("kernel state of %d hosts compared with a fresh apply: %d lines (nft rulesets, namespaces, links, addresses, routes, FDB, dnsmasq)", l.Hosts, lines)
}

func lineDiff(a, b []string) (onlyA, onlyB []string) {
	count := map[string]int{}
	for _, s := range a {
		count[s]++
	}
	for _, s := range b {
		count[s]--
	}
	for s, n := range count {
		for ; n > 0; n-- {
			onlyA = append(onlyA, s)
		}
		for ; n < 0; n++ {
			onlyB = append(onlyB, s)
		}
	}
	sort.Strings(onlyA)
	sort.Strings(onlyB)
	return onlyA, onlyB
}

var (
	nftCounter = regexp.MustCompile(`counter packets \d+ bytes \d+`)
	nftExpires = regexp.MustCompile(` expires \S+`)
	linkIndex  = regexp.MustCompile(`^\d+: `)
	volatile   = regexp.MustCompile(` (valid_lft|preferred_lft) \S+`)
)

// nftLines qualifies each line of an nft listing with its table and
// chain, set or map, and puts each set element on a line of its own, so
// that two listings compare as sets of lines whatever order the kernel
// lists chains and elements in.
func nftLines(listing []string) []string {
	var out, path []string
	inElems := false
	for _, s := range listing {
		s = nftExpires.ReplaceAllString(nftCounter.ReplaceAllString(s, "counter"), "")
		switch {
		case inElems || strings.HasPrefix(s, "elements = {"):
			body := strings.TrimPrefix(s, "elements = {")
			inElems = !strings.HasSuffix(body, "}")
			for _, e := range strings.Split(strings.TrimSuffix(body, "}"), ",") {
				if e = strings.TrimSpace(e); e != "" {
					out = append(out, strings.Join(path, " | ")+" | element "+e)
				}
			}
		case strings.HasSuffix(s, "{"):
			path = append(path, strings.TrimSpace(strings.TrimSuffix(s, "{")))
			out = append(out, strings.Join(path, " | "))
		case s == "}":
			if len(path) > 0 {
				path = path[:len(path)-1]
			}
		default:
			out = append(out, strings.Join(path, " | ")+" | "+s)
		}
	}
	return out
}

// linkLines renders `ip -j -d link` as one line per link: name, kind, up
// or not, MTU, master, VXLAN parameters, and the MAC when it is a port's
// (the agent sets those; the kernel picks the others anew on every apply).
func linkLines(t *testing.T, js string, macs map[string]bool) []string {
	var links []struct {
		Name     string   `json:"ifname"`
		Flags    []string `json:"flags"`
		MTU      int      `json:"mtu"`
		Master   string   `json:"master"`
		Address  string   `json:"address"`
		LinkInfo struct {
			Kind string         `json:"info_kind"`
			Data map[string]any `json:"info_data"`
		} `json:"linkinfo"`
	}
	if err := json.Unmarshal([]byte(js), &links); err != nil {
		t.Errorf("ip -j link: %v", err)
		return nil
	}
	var out []string
	for _, k := range links {
		s := fmt.Sprintf("%s kind=%s up=%t mtu=%d master=%s", k.Name, k.LinkInfo.Kind, slices.Contains(k.Flags, "UP"), k.MTU, k.Master)
		if k.LinkInfo.Kind == "vxlan" {
			d := k.LinkInfo.Data
			s += fmt.Sprintf(" vni=%v local=%v port=%v learning=%v", d["id"], d["local"], d["port"], d["learning"])
		}
		if macs[strings.ToLower(k.Address)] {
			s += " mac=" + k.Address
		}
		out = append(out, s)
	}
	return out
}

// hostKernelState is what host i's agent made in the kernel, by section:
// the namespaces it made, and in its host namespace and each of those the
// nft ruleset, links, addresses and routes; the host's remote FDB entries;
// its dnsmasqs' command lines. Names are relative to the host's prefix;
// counters, lifetimes, interface indexes and kernel-chosen MACs are left
// out.
func hostKernelState(t *testing.T, l *Lab, i int, macs map[string]bool) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	prefix := l.NetNSPrefix(i)
	made, _ := filepath.Glob("/run/netns/" + prefix + "*")
	nss := []string{l.Namespace(i)}
	for _, m := range made {
		nss = append(nss, filepath.Base(m))
		out["namespaces"] = append(out["namespaces"], strings.TrimPrefix(filepath.Base(m), prefix))
	}
	sort.Strings(out["namespaces"])
	run := func(ns string, args ...string) []string {
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s in %s: %v: %s", strings.Join(args, " "), ns, err, b)
			return nil
		}
		var lines []string
		for _, s := range strings.Split(string(b), "\n") {
			if s = strings.TrimSpace(s); s != "" {
				lines = append(lines, s)
			}
		}
		return lines
	}
	for _, ns := range nss {
		name := "host"
		if ns != l.Namespace(i) {
			name = strings.TrimPrefix(ns, prefix)
		}
		out[name+" nft"] = nftLines(run(ns, "nft", "list", "ruleset"))
		out[name+" links"] = linkLines(t, strings.Join(run(ns, "ip", "-j", "-d", "link", "show"), "\n"), macs)
		for _, s := range run(ns, "ip", "-o", "-4", "addr", "show") {
			out[name+" addrs"] = append(out[name+" addrs"], volatile.ReplaceAllString(linkIndex.ReplaceAllString(s, ""), ""))
		}
		for _, s := range run(ns, "ip", "-4", "route", "show", "table", "all") {
			out[name+" routes"] = append(out[name+" routes"], s)
		}
	}
	for _, s := range run(l.Namespace(i), "bridge", "fdb", "show") {
		if strings.Contains(s, " dst ") {
			out["fdb"] = append(out["fdb"], s)
		}
	}
	for _, d := range dnsmasqs(l) {
		if !strings.HasPrefix(d.pidFile, filepath.Join(l.Dir, l.HostName(i))+"/") {
			continue
		}
		raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", d.pid))
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		sort.Strings(args)
		out["dnsmasq"] = append(out["dnsmasq"], strings.Join(args, " "))
	}
	for k := range out {
		sort.Strings(out[k])
	}
	return out
}
