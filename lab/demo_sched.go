package lab

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/strata-infra/strata/pkg/api"
)

// SchedulingZones are the zones and agent-config aggregates the
// scheduling demo gives the lab's hosts: h1 and h2 in az1, h3 in az2 and,
// by its own agent config, in aggregate "fast".
func SchedulingZones(i int) []string {
	if i >= 3 {
		return []string{"--zone", "az2", "--aggregate", "fast"}
	}
	return []string{"--zone", "az1"}
}

// demoSchedProject holds the scheduling demo's instances.
const demoSchedProject = "demo-sched"

// schedulingManifest is what the demo applies: a flavor that asks for
// the "fast" aggregate's metadata, the aggregate itself (its hosts come
// from the agents' configs), and an anti-affinity group.
const schedulingManifest = `kind: flavor
name: tiny
spec: {vcpus: 1, ram_mib: 160, disk_gib: 1}
---
kind: flavor
name: tiny-ssd
spec: {vcpus: 1, ram_mib: 160, disk_gib: 1, extra_specs: {disk: ssd}}
---
kind: image
name: guest
spec: {format: raw, path: %s}
---
kind: aggregate
name: fast
spec: {metadata: {disk: ssd}}
---
kind: project
name: demo-sched
---
kind: servergroup
project: demo-sched
name: web
spec: {policy: anti-affinity}
`

// DemoScheduling shows the scheduler at work on compute hosts placed by
// SchedulingZones: three members of an anti-affinity group on three
// hosts and a fourth refused with the reason, a zone request, a flavor
// matched to an aggregate a host joined by its agent config, and a zone
// nobody has refused with its reason. Instances are created stopped (the
// placement is the point; no guest boots). It prints what stratactl
// answers and fails when a placement breaks what it asked for.
func (l *Lab) DemoScheduling(w io.Writer, image string) error {
	dir, err := os.MkdirTemp("", "strata-lab-sched-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	manifest := filepath.Join(dir, "scheduling.yaml")
	if err := os.WriteFile(manifest, []byte(fmt.Sprintf(schedulingManifest, image)), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(w, "$ stratactl apply -f scheduling.yaml   # flavors tiny and tiny-ssd (disk=ssd), aggregate fast (disk=ssd), group web (anti-affinity)\n")
	if err := l.Ctl(nil, "apply", "-f", manifest); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "$ stratactl instances create -p demo-sched ...\tHOST\tPLACEMENT")
	var bad []string
	create := func(name string, args ...string) (api.Resource, error) {
		cmd := append([]string{"instances", "create", "-p", demoSchedProject, name, "--image", "guest", "--stopped"}, args...)
		if err := l.Ctl(nil, cmd...); err != nil {
			return api.Resource{}, err
		}
		var r api.Resource
		err := l.Ctl(&r, "instances", "show", "-p", demoSchedProject, name)
		return r, err
	}
	placed := func(name string, want func(host string) string, args ...string) string {
		r, err := create(name, args...)
		line := name + " " + strings.Join(args, " ")
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", name, err))
			fmt.Fprintf(tw, "%s\t-\t%v\n", line, err)
			return ""
		}
		var s api.InstanceSpec
		_ = json.Unmarshal(r.Spec, &s)
		msg := ""
		if r.Placement != nil {
			msg = r.Placement.Message
		}
		if why := want(s.Host); why != "" {
			bad = append(bad, fmt.Sprintf("%s on %s: %s", name, s.Host, why))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", line, s.Host, msg)
		return s.Host
	}
	refused := func(name, want string, args ...string) {
		_, err := create(name, args...)
		line := name + " " + strings.Join(args, " ")
		switch {
		case err == nil:
			bad = append(bad, name+" was placed; want a refusal")
			fmt.Fprintf(tw, "%s\tplaced\t(want a refusal)\n", line)
		default:
			msg := err.Error()
			if i := strings.Index(msg, "0 of "); i >= 0 {
				msg = msg[i:]
			}
			msg = strings.TrimSpace(strings.SplitN(msg, "\n", 2)[0])
			msg = strings.TrimSuffix(strings.TrimSuffix(msg, `"`), `",`)
			if !strings.Contains(err.Error(), want) {
				bad = append(bad, fmt.Sprintf("%s refused with %v, want %q", name, err, want))
			}
			fmt.Fprintf(tw, "%s\trefused\t%s\n", line, msg)
		}
	}
	web := map[string]bool{}
	for _, n := range []string{"web1", "web2", "web3"} {
		placed(n, func(h string) string {
			if web[h] || h == "" {
				return "a second member of anti-affinity group web there"
			}
			web[h] = true
			return ""
		}, "--flavor", "tiny", "--group", "web")
	}
	refused("web4", "3 already holding a member of anti-affinity group web", "--flavor", "tiny", "--group", "web")
	placed("db1", func(h string) string {
		if h != "h3" {
			return "asked for zone az2, which only h3 is in"
		}
		return ""
	}, "--flavor", "tiny", "--zone", "az2")
	placed("fast1", func(h string) string {
		if h != "h3" {
			return "flavor tiny-ssd wants aggregate fast, which only h3 joined (its agent config)"
		}
		return ""
	}, "--flavor", "tiny-ssd")
	refused("far1", "3 in another zone", "--flavor", "tiny", "--zone", "az9")
	refused("fast2", "1 in another zone, 2 not in an aggregate matching the flavor", "--flavor", "tiny-ssd", "--zone", "az1")
	tw.Flush()
	if len(bad) > 0 {
		return fmt.Errorf("scheduling demo: %s", strings.Join(bad, "; "))
	}
	return nil
}
