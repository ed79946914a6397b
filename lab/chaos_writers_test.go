package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
)

// chaosManifest is what the writers share: the project, the external
// network their routers and floating IPs use, and one security group
// they all edit at once (read-modify-write with If-Match).
const chaosManifest = `
kind: project
name: chaos
---
kind: externalnetwork
name: ext
spec:
  physical_network: physnet1
  cidr: 203.0.113.0/24
  gateway: 203.0.113.1
  allocation_pools: [{start: 203.0.113.10, end: 203.0.113.99}]
---
kind: securitygroup
project: chaos
name: shared
spec:
  rules: [{direction: egress}]
`

const chaosPortsPerWriter = 4

// chaosObj is one resource a writer owns, as its last acknowledged write
// left it.
type chaosObj struct {
	plural, name string
	// spec is what the writer last wrote and the API acknowledged; nil
	// when its last acknowledged write deleted it.
	spec map[string]any
	// etag is the resource's epoch when last seen, sent as If-Match.
	etag uint64
}

// chaosWriter makes random valid changes to the resources it owns
// (networks, subnets, security groups, endpoint ports, a router and a
// floating IP) with If-Match on every update and delete, and races the
// other writers on the shared security group.
type chaosWriter struct {
	id     int
	l      *Lab
	c      *apiclient.Client
	rng    *rand.Rand
	objs   map[string]*chaosObj // by plural/name
	shared map[int]bool         // this writer's rules (by port) in the shared group
	// writes counts acknowledged writes; raced counts 412s on the shared
	// group (another writer got there first) that were re-read and redone;
	// stale counts writes with a stale If-Match, refused as they must be.
	writes, raced, stale int
}

func (w *chaosWriter) name(s string) string { return fmt.Sprintf("w%d-%s", w.id, s) }

func (w *chaosWriter) obj(plural, name string) *chaosObj {
	k := plural + "/" + name
	if w.objs[k] == nil {
		w.objs[k] = &chaosObj{plural: plural, name: name}
	}
	return w.objs[k]
}

func (w *chaosWriter) exists(plural, name string) bool {
	o := w.objs[plural+"/"+name]
	return o != nil && o.spec != nil
}

// setup makes the writer's lasting resources: network a with its subnet,
// two security groups, a router on ext with an interface on a, and port
// fp on a with a floating IP.
func (w *chaosWriter) setup() error {
	steps := []func() error{
		func() error { return w.put("networks", w.name("a"), map[string]any{}) },
		func() error { return w.put("subnets", w.name("a"), w.subnetSpec("a")) },
		func() error { return w.put("securitygroups", w.name("sg0"), w.sgSpec()) },
		func() error { return w.put("securitygroups", w.name("sg1"), w.sgSpec()) },
		func() error { return w.put("routers", w.name("r"), w.routerSpec(true, false)) },
		func() error { return w.put("ports", w.name("fp"), w.portSpec(w.name("a"))) },
		func() error {
			return w.put("floatingips", w.name("fip"), map[string]any{"external_network": "ext", "port": w.name("fp")})
		},
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}

// step makes one random change.
func (w *chaosWriter) step() error {
	switch n := w.rng.IntN(13); {
	case n < 4:
		return w.portStep()
	case n < 6:
		return w.put("securitygroups", w.name(fmt.Sprintf("sg%d", w.rng.IntN(2))), w.sgSpec())
	case n == 6:
		mtu := []int{1400, 1420, 1450}[w.rng.IntN(3)]
		return w.put("networks", w.name("a"), map[string]any{"mtu": mtu})
	case n == 7:
		net := "a"
		if w.exists("networks", w.name("b")) && w.rng.IntN(2) == 0 {
			net = "b"
		}
		return w.put("subnets", w.name(net), w.subnetSpec(net))
	case n == 8:
		return w.networkBStep()
	case n == 9:
		return w.put("routers", w.name("r"), w.routerSpec(w.rng.IntN(2) == 0, w.exists("subnets", w.name("b")) && w.rng.IntN(2) == 0))
	case n == 10:
		spec := map[string]any{"external_network": "ext"}
		if w.rng.IntN(2) == 0 {
			spec["port"] = w.name("fp")
		}
		return w.put("floatingips", w.name("fip"), spec)
	case n == 11:
		return w.staleStep()
	default:
		return w.sharedStep()
	}
}

// staleStep writes or deletes one of the writer's resources with a stale
// If-Match (an epoch other than the resource's): the API must refuse it
// with 412 and change nothing (the end check finds any change).
func (w *chaosWriter) staleStep() error {
	var live []*chaosObj
	for _, o := range w.objs {
		if o.spec != nil {
			live = append(live, o)
		}
	}
	if len(live) == 0 {
		return nil
	}
	slices.SortFunc(live, func(a, b *chaosObj) int { return strings.Compare(a.plural+a.name, b.plural+b.name) })
	o := live[w.rng.IntN(len(live))]
	path := apiclient.ResourcePath(o.plural, "chaos", o.name)
	stale := apiclient.IfMatch(o.etag - 1)
	give := time.Now().Add(chaosHealBound)
	for {
		var err error
		if w.rng.IntN(2) == 0 {
			err = w.do(http.MethodDelete, path, stale, nil, nil)
		} else {
			buf, _ := json.Marshal(map[string]any{}) // would reset every field the writer set
			err = w.do(http.MethodPut, path, stale, api.ResourceRequest{Name: o.name, Spec: buf}, nil)
		}
		switch {
		case isCode(err, http.StatusPreconditionFailed):
			w.stale++
			return nil
		case err == nil:
			return fmt.Errorf("%s %s: a write with a stale If-Match (epoch %d) was accepted", o.plural, o.name, o.etag-1)
		case !retriable(err):
			return fmt.Errorf("%s %s: a stale If-Match got %v, want 412", o.plural, o.name, err)
		case time.Now().After(give):
			return fmt.Errorf("%s %s: no answer to a stale write in %s: %w", o.plural, o.name, chaosHealBound, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func (w *chaosWriter) subnetSpec(net string) map[string]any {
	third := map[string]int{"a": 1, "b": 2}[net]
	s := map[string]any{"network": w.name(net), "cidr": fmt.Sprintf("10.%d.%d.0/24", 60+w.id, third)}
	if w.rng.IntN(2) == 0 {
		s["dns_servers"] = []any{fmt.Sprintf("10.%d.%d.%d", 60+w.id, third, 2+w.rng.IntN(5))}
	}
	if w.rng.IntN(2) == 0 {
		s["host_routes"] = []any{map[string]any{"destination": fmt.Sprintf("192.168.%d.0/24", w.rng.IntN(4)),
			"nexthop": fmt.Sprintf("10.%d.%d.254", 60+w.id, third)}}
	}
	return s
}

func (w *chaosWriter) sgSpec() map[string]any {
	rules := []any{}
	if w.rng.IntN(3) > 0 {
		rules = append(rules, map[string]any{"direction": "egress"})
	}
	for range w.rng.IntN(3) {
		rules = append(rules, map[string]any{"direction": "ingress", "protocol": []string{"tcp", "udp"}[w.rng.IntN(2)],
			"ports": fmt.Sprint(8000 + w.rng.IntN(100)), "remote_cidr": fmt.Sprintf("10.%d.0.0/16", 60+w.rng.IntN(3))})
	}
	if w.rng.IntN(3) == 0 {
		rules = append(rules, map[string]any{"direction": "ingress", "protocol": "icmp"})
	}
	return map[string]any{"rules": rules}
}

func (w *chaosWriter) routerSpec(snat, withB bool) map[string]any {
	ifs := []any{map[string]any{"subnet": w.name("a")}}
	if withB {
		ifs = append(ifs, map[string]any{"subnet": w.name("b")})
	}
	return map[string]any{"external_network": "ext", "snat": snat, "interfaces": ifs}
}

func (w *chaosWriter) portSpec(net string) map[string]any {
	s := map[string]any{"network": net, "host": w.l.HostName(1 + w.rng.IntN(w.l.Hosts)), "owner": api.PortOwnerEndpoint}
	var groups []any
	for _, g := range []string{w.name("sg0"), w.name("sg1"), "shared"} {
		if w.rng.IntN(3) == 0 {
			groups = append(groups, g)
		}
	}
	if len(groups) > 0 {
		s["security_groups"] = groups
	}
	return s
}

// portStep creates, moves and regroups, or deletes one of the writer's
// ports.
func (w *chaosWriter) portStep() error {
	name := w.name(fmt.Sprintf("p%d", w.rng.IntN(chaosPortsPerWriter)))
	o := w.obj("ports", name)
	if o.spec == nil {
		net := w.name("a")
		if w.exists("subnets", w.name("b")) && w.rng.IntN(2) == 0 {
			net = w.name("b")
		}
		return w.put("ports", name, w.portSpec(net))
	}
	if w.rng.IntN(2) == 0 {
		return w.del("ports", name)
	}
	return w.put("ports", name, w.portSpec(o.spec["network"].(string)))
}

// networkBStep makes network b with its subnet, or takes it down: its
// ports, the router's interface on it, the subnet, the network.
func (w *chaosWriter) networkBStep() error {
	b := w.name("b")
	if !w.exists("networks", b) {
		if err := w.put("networks", b, map[string]any{}); err != nil {
			return err
		}
		return w.put("subnets", b, w.subnetSpec("b"))
	}
	for k := range chaosPortsPerWriter {
		p := w.obj("ports", w.name(fmt.Sprintf("p%d", k)))
		if p.spec != nil && p.spec["network"] == b {
			if err := w.del("ports", p.name); err != nil {
				return err
			}
		}
	}
	if r := w.obj("routers", w.name("r")); len(r.spec["interfaces"].([]any)) > 1 {
		if err := w.put("routers", r.name, w.routerSpec(r.spec["snat"].(bool), false)); err != nil {
			return err
		}
	}
	if err := w.del("subnets", b); err != nil {
		return err
	}
	return w.del("networks", b)
}

// sharedStep adds or removes one of this writer's rules in the shared
// security group by read-modify-write with If-Match: a 412 means another
// writer changed it in between, so it reads again and redoes its edit.
func (w *chaosWriter) sharedStep() error {
	port := 9000 + 10*w.id + w.rng.IntN(4)
	want := !w.shared[port]
	rule := api.SecurityGroupRuleSpec{Direction: "ingress", Protocol: "tcp", Ports: fmt.Sprint(port)}
	path := apiclient.ResourcePath("securitygroups", "chaos", "shared")
	give := time.Now().Add(chaosHealBound)
	for {
		var r api.Resource
		err := w.do(http.MethodGet, path, nil, nil, &r)
		if err == nil {
			var spec api.SecurityGroupSpec
			_ = json.Unmarshal(r.Spec, &spec)
			if i := slices.Index(spec.Rules, rule); want && i < 0 {
				spec.Rules = append(spec.Rules, rule)
			} else if !want && i >= 0 {
				spec.Rules = slices.Delete(spec.Rules, i, i+1)
			} else {
				// Already as wanted: an earlier attempt that got no answer landed.
				w.shared[port] = want
				w.writes++
				return nil
			}
			buf, _ := json.Marshal(spec)
			// Take a while between read and write, as a person would:
			// the other writers get in between now and then.
			time.Sleep(time.Duration(w.rng.IntN(300)) * time.Millisecond)
			err = w.do(http.MethodPut, path, apiclient.IfMatch(r.Epoch), api.ResourceRequest{Name: "shared", Spec: buf}, nil)
			if err == nil {
				w.shared[port] = want
				w.writes++
				return nil
			}
			if isCode(err, http.StatusPreconditionFailed) {
				w.raced++
				continue
			}
		}
		if !retriable(err) {
			return fmt.Errorf("shared security group, rule %d: %w", port, err)
		}
		if time.Now().After(give) {
			return fmt.Errorf("shared security group: no acknowledgement in %s: %w", chaosHealBound, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// put writes spec until the API acknowledges it: with If-Match on the
// version last seen when the resource exists. A write that got no answer
// (the coordinator was killed) may have landed: its retry then meets a
// 412, and a read shows whether the spec is there. A 412 whose read still
// shows the last acknowledged spec was a change by the coordinator alone
// (it fills in assigned fields): the write is redone on that version.
// Anything else in the way is a lost or mixed write.
func (w *chaosWriter) put(plural, name string, spec map[string]any) error {
	o := w.obj(plural, name)
	buf, _ := json.Marshal(spec)
	path := apiclient.ResourcePath(plural, "chaos", name)
	give := time.Now().Add(chaosHealBound)
	for {
		var hdr http.Header
		if o.spec != nil {
			hdr = apiclient.IfMatch(o.etag)
		}
		var pr api.PutResult
		err := w.do(http.MethodPut, path, hdr, api.ResourceRequest{Name: name, Spec: buf}, &pr)
		if err == nil {
			o.spec, o.etag = spec, pr.Resource.Epoch
			w.writes++
			return nil
		}
		if isCode(err, http.StatusPreconditionFailed) {
			var r api.Resource
			if err = w.do(http.MethodGet, path, nil, nil, &r); err == nil {
				switch {
				case covers(spec, r.Spec):
					o.spec, o.etag = spec, r.Epoch
					w.writes++
					return nil
				case o.spec != nil && covers(o.spec, r.Spec):
					o.etag = r.Epoch
					continue
				default:
					return fmt.Errorf("%s %s: someone else's change in the way of ours: stored %s, last acknowledged %v, writing %s", plural, name, r.Spec, o.spec, buf)
				}
			}
		}
		if !retriable(err) && !placementPending(err) {
			return fmt.Errorf("%s %s: %s refused: %w", plural, name, buf, err)
		}
		if time.Now().After(give) {
			return fmt.Errorf("%s %s: no acknowledgement in %s: %w", plural, name, chaosHealBound, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// del deletes with If-Match until acknowledged; a 412 whose read finds
// the resource gone means an earlier attempt landed.
func (w *chaosWriter) del(plural, name string) error {
	o := w.obj(plural, name)
	path := apiclient.ResourcePath(plural, "chaos", name)
	give := time.Now().Add(chaosHealBound)
	for {
		err := w.do(http.MethodDelete, path, apiclient.IfMatch(o.etag), nil, nil)
		if isCode(err, http.StatusPreconditionFailed) {
			var r api.Resource
			err = w.do(http.MethodGet, path, nil, nil, &r)
			switch {
			case isCode(err, http.StatusNotFound):
				err = nil
			case err == nil && covers(o.spec, r.Spec):
				o.etag = r.Epoch
				continue
			case err == nil:
				return fmt.Errorf("%s %s: someone else's change in the way of our delete: stored %s, last acknowledged %v", plural, name, r.Spec, o.spec)
			}
		}
		if err == nil {
			o.spec, o.etag = nil, 0
			w.writes++
			return nil
		}
		if !retriable(err) {
			return fmt.Errorf("delete %s %s refused: %w", plural, name, err)
		}
		if time.Now().After(give) {
			return fmt.Errorf("delete %s %s: no acknowledgement in %s: %w", plural, name, chaosHealBound, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func (w *chaosWriter) do(method, path string, hdr http.Header, in, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return w.c.DoHeader(ctx, method, path, hdr, in, out)
}

func isCode(err error, code int) bool {
	var ae *api.Error
	return errors.As(err, &ae) && ae.Code == code
}

// retriable: no answer (the coordinator down or restarting) or a 5xx; a
// 4xx says the change itself was refused.
func retriable(err error) bool {
	var ae *api.Error
	return !errors.As(err, &ae) || ae.Code >= 500
}

// placementPending is the coordinator finding no alive host to place on
// (DHCP of a new subnet, a router): right after its own restart, or while
// the hosts are cut off. It passes with the fault, so the write is retried
// within the heal bound.
func placementPending(err error) bool {
	var ae *api.Error
	return errors.As(err, &ae) && ae.Code == http.StatusConflict && strings.Contains(ae.Message, "no alive host")
}

// covers reports whether every field of want has that value in the stored
// spec (fields want leaves out take defaults or assigned values).
func covers(want map[string]any, stored json.RawMessage) bool {
	var got map[string]any
	if want == nil || json.Unmarshal(stored, &got) != nil {
		return false
	}
	norm, _ := json.Marshal(want)
	var w map[string]any
	_ = json.Unmarshal(norm, &w)
	for k, v := range w {
		if !reflect.DeepEqual(v, got[k]) {
			return false
		}
	}
	return true
}

// sharedRules is the shared group's wanted rules: its first rule and each
// writer's acknowledged ones, as sorted strings.
func sharedRules(ws []*chaosWriter) []string {
	out := []string{fmt.Sprint(api.SecurityGroupRuleSpec{Direction: "egress"})}
	for _, w := range ws {
		for port, on := range w.shared {
			if on {
				out = append(out, fmt.Sprint(api.SecurityGroupRuleSpec{Direction: "ingress", Protocol: "tcp", Ports: fmt.Sprint(port)}))
			}
		}
	}
	sort.Strings(out)
	return out
}

func ruleStrings(rs []api.SecurityGroupRuleSpec) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprint(r))
	}
	sort.Strings(out)
	return out
}
