package registry

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/strata-infra/strata/coordinator/scheduler"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/computespec"
)

// Attach makes the registry's scheduler follow st: one read of what is
// stored now, then every commit's changes (store.Observe). Call it once,
// before serving.
func (r *Registry) Attach(st *store.Store) error {
	f := &schedFeed{s: r.Scheduler, flavors: map[string]computespec.Flavor{}}
	err := st.View(func(tx *store.Tx) error {
		var all []api.Change
		// Flavors and groups first: instances refer to them.
		for _, kind := range []string{"flavor", "servergroup", "aggregate", "hostconfig", "instance"} {
			rs, err := tx.List(kind, "", true)
			if err != nil {
				return err
			}
			for _, res := range rs {
				all = append(all, api.Change{Op: api.OpPut, Resource: res})
			}
		}
		f.apply(0, all)
		return nil
	})
	if err != nil {
		return fmt.Errorf("load scheduler state: %w", err)
	}
	st.Observe(f.apply)
	return nil
}

// schedFeed applies committed changes to the scheduler.
type schedFeed struct {
	s       *scheduler.State
	flavors map[string]computespec.Flavor // flavor sizes, by name
}

func (f *schedFeed) apply(_ uint64, changes []api.Change) {
	for _, ch := range changes {
		res, del := ch.Resource, ch.Op == api.OpDelete
		switch res.Kind {
		case "flavor":
			if del {
				delete(f.flavors, res.Name)
			} else {
				f.flavors[res.Name] = flavorOf(res.Name, decode[api.FlavorSpec](res))
			}
		case "servergroup":
			if del {
				f.s.RemoveGroup(groupKey(res.Project, res.Name))
			} else {
				f.s.SetGroup(groupKey(res.Project, res.Name), decode[api.ServerGroupSpec](res).Policy)
			}
		case "aggregate":
			if del {
				f.s.RemoveAggregate(res.Name)
			} else {
				s := decode[api.AggregateSpec](res)
				f.s.SetAggregate(scheduler.Aggregate{Name: res.Name, Hosts: s.Hosts, Metadata: s.Metadata})
			}
		case "hostconfig":
			f.s.SetDrained(res.Name, !del && HostConfig(res).Drained)
		case "instance":
			key := instanceKey(res.Project, res.Name)
			if del {
				f.s.Forget(key)
				continue
			}
			s := decode[api.InstanceSpec](res)
			f.s.Record(key, s.Host, resourcesOf(f.flavors[s.Flavor]), groupKey(res.Project, s.Group))
		}
	}
}

func instanceKey(project, name string) string { return project + "/" + name }

// groupKey is a server group's scheduler key; "" for no group.
func groupKey(project, group string) string {
	if group == "" {
		return ""
	}
	return project + "/" + group
}

func resourcesOf(fl computespec.Flavor) scheduler.Resources {
	return scheduler.Resources{VCPUs: fl.VCPUs, RAMMiB: fl.RAMMiB, DiskGiB: fl.DiskGiB}
}

// schedule asks the scheduler for a host for the instance (a new one, or
// a stopped one being resized or migrated when avoid or prev is set) and
// holds the claim until this commit ends: the commit's changes confirm it
// through the feed, a failed commit releases it.
//
// Its outcome is kept as the instance's placement status (where it went,
// or why no host could take it), which outlives a refused commit.
// why, when set, starts the status's message (a move after a failed build).
func schedule(a *Admission, r *api.Resource, s *api.InstanceSpec, fl computespec.Flavor, img api.ImageSpec, asked, avoid, why string) (string, error) {
	sched := a.Scheduler
	if sched == nil {
		return "", errors.New("the coordinator has no scheduler")
	}
	storage, err := instanceStorage(a, r, s, img)
	if err != nil {
		return "", err
	}
	req := scheduler.Request{
		Instance: instanceKey(r.Project, r.Name), Resources: resourcesOf(fl), ExtraSpecs: fl.ExtraSpecs,
		Zone: s.Zone, Group: groupKey(r.Project, s.Group), Arch: img.Architecture, Hypervisor: img.HypervisorType,
		Storage: storage, Host: asked, Avoid: avoid, Failed: s.BuildFailures,
	}
	claim, err := sched.Place(req)
	var nh *scheduler.NoHostError
	switch {
	case errors.As(err, &nh):
		err = noHost(nh, sched, req, storageField(s))
		st := refusal(nh, err)
		st.Message = why + st.Message
		a.Tx.SetPlacement(r.Key(), st)
		return "", err
	case err != nil:
		return "", err
	}
	a.Tx.OnRollback(func() { sched.Release(claim.Instance, claim.Host) })
	a.Tx.SetPlacement(r.Key(), api.PlacementStatus{State: api.PlacementPlaced, Host: claim.Host,
		Message: fmt.Sprintf("%splaced on %s (choice %d)", why, claim.Host, claim.Attempts)})
	return claim.Host, nil
}

// refusal is the placement status of a refused placement: the API's
// message and the counts filter by filter.
func refusal(nh *scheduler.NoHostError, err error) api.PlacementStatus {
	p := api.PlacementStatus{State: api.PlacementRefused, Message: err.Error(), TotalHosts: nh.Total}
	var ae *api.Error
	var fe *api.FieldError
	switch {
	case errors.As(err, &ae):
		p.Message = ae.Message
	case errors.As(err, &fe):
		p.Message = fe.Message
	}
	for _, rm := range nh.Removed {
		p.Removed = append(p.Removed, api.PlacementRemoval{Reason: rm.Reason, Hosts: rm.Hosts})
	}
	return p
}

// noHost turns a refusal into the API's error: 400 naming spec.host when
// the named host is unknown, dead or drained, 400 naming spec.flavor when
// the flavor is larger than any host, else 409 with the reasons.
func noHost(nh *scheduler.NoHostError, sched *scheduler.State, req scheduler.Request, storageField string) error {
	msg := "no host for instance " + req.Instance + ": " + nh.Error()
	if req.Host != "" && (nh.Total == 0 || nh.Removed[0].Reason == (scheduler.AliveFilter{}).Reason(nil)) {
		return api.Fieldf("spec.host", "%q is not an alive, undrained host: %s", req.Host, nh.Error())
	}
	if !sched.FitsAnyHost(req.Resources) {
		return api.Fieldf("spec.flavor", "larger than any alive host (%d vCPUs, %d MiB, %d GiB): %s",
			req.Resources.VCPUs, req.Resources.RAMMiB, req.Resources.DiskGiB, msg)
	}
	return &api.Error{Code: http.StatusConflict, Field: blame(nh, storageField), Message: msg}
}

// storageField is the request field behind the instance's storage needs:
// its volumes when it has some, else what its root disk comes from.
func storageField(s *api.InstanceSpec) string {
	switch {
	case len(s.Volumes) > 0:
		return "spec.volumes"
	case s.BootVolume != "":
		return "spec.boot_volume"
	}
	return "spec.image"
}

// blame names the request field behind the filter that removed the most
// of the live hosts: the zone, the group, the image, or the flavor (its
// size or extra specs); none when every host is dead or drained.
func blame(nh *scheduler.NoHostError, storageField string) string {
	var top scheduler.Removal
	for _, r := range nh.Removed {
		if r.Hosts > top.Hosts && r.Reason != (scheduler.AliveFilter{}).Reason(nil) {
			top = r
		}
	}
	switch {
	case top.Reason == (scheduler.ZoneFilter{}).Reason(nil):
		return "spec.zone"
	case strings.Contains(top.Reason, " group "):
		return "spec.group"
	case top.Reason == (scheduler.ImageFilter{}).Reason(nil):
		return "spec.image"
	case strings.HasPrefix(top.Reason, "not configured for "):
		// The disks' pools: the volumes, or the root disk's source.
		return storageField
	case top.Hosts == 0, strings.HasPrefix(top.Reason, "without "), strings.Contains(top.Reason, "current host"):
		return ""
	}
	return "spec.flavor"
}
