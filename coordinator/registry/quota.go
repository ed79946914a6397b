package registry

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// QuotaKind is a project's quota, named by the project (admin only). A
// project without one has api.DefaultQuota.
func QuotaKind() *Kind {
	n := map[string]any{"type": "integer", "minimum": -1}
	props := map[string]any{}
	for _, f := range []string{"networks", "ports", "routers", "floatingips", "instances", "vcpus", "ram_mib", "volumes", "gigabytes"} {
		props[f] = n
	}
	return &Kind{
		Name: "quota", Plural: "quotas", Scope: Global, Order: 2, AdminWrite: true,
		NewSpec: func() any { return &api.QuotaSpec{} },
		Admit:   admitQuota,
		Schema:  map[string]any{"type": "object", "additionalProperties": false, "properties": props},
	}
}

func admitQuota(a *Admission, r *api.Resource, spec any) error {
	if _, err := a.Tx.Get(api.Key{Kind: "project", Name: r.Name}); errors.Is(err, store.ErrNotFound) {
		return api.Fieldf("name", "project %q does not exist", r.Name)
	}
	for _, d := range dimensions(spec.(*api.QuotaSpec)) {
		if *d.v < -1 {
			return api.Fieldf("spec."+d.name, "%d is not a limit (-1 for none, 0 for the default)", *d.v)
		}
	}
	return nil
}

type dimension struct {
	name string
	v    *int
}

func dimensions(q *api.QuotaSpec) []dimension {
	return []dimension{{"networks", &q.Networks}, {"ports", &q.Ports}, {"routers", &q.Routers},
		{"floatingips", &q.FloatingIPs}, {"instances", &q.Instances}, {"vcpus", &q.VCPUs},
		{"ram_mib", &q.RAMMiB}, {"volumes", &q.Volumes}, {"gigabytes", &q.Gigabytes}}
}

// Limits returns a project's quota with defaults filled in.
func Limits(tx *store.Tx, project string) (api.QuotaSpec, error) {
	r, err := tx.Get(api.Key{Kind: "quota", Name: project})
	if errors.Is(err, store.ErrNotFound) {
		return api.DefaultQuota, nil
	}
	if err != nil {
		return api.QuotaSpec{}, err
	}
	return decode[api.QuotaSpec](r).WithDefaults(), nil
}

// counted are the kinds a quota counts one by one.
var counted = map[string]func(q *api.QuotaSpec) *int{
	"network": func(q *api.QuotaSpec) *int { return &q.Networks }, "port": func(q *api.QuotaSpec) *int { return &q.Ports },
	"router": func(q *api.QuotaSpec) *int { return &q.Routers }, "floatingip": func(q *api.QuotaSpec) *int { return &q.FloatingIPs },
	"instance": func(q *api.QuotaSpec) *int { return &q.Instances }, "volume": func(q *api.QuotaSpec) *int { return &q.Volumes },
}

// Usage is what a project holds, in the quota's units. Counts read keys
// only; vCPUs, RAM and gigabytes decode instances and volumes.
func Usage(tx *store.Tx, project string) (api.QuotaSpec, error) {
	var u api.QuotaSpec
	for kind, f := range counted {
		*f(&u) = tx.Count(kind, project)
	}
	flavors := map[string]api.FlavorSpec{}
	ins, err := tx.List("instance", project, false)
	if err != nil {
		return u, err
	}
	for _, r := range ins {
		c := cost(tx, r, flavors)
		u.VCPUs, u.RAMMiB = u.VCPUs+c.VCPUs, u.RAMMiB+c.RAMMiB
	}
	vols, err := tx.List("volume", project, false)
	if err != nil {
		return u, err
	}
	for _, r := range vols {
		u.Gigabytes += decode[api.VolumeSpec](r).SizeGiB
	}
	return u, nil
}

// cost is what one resource weighs in the quota's summed dimensions.
func cost(tx *store.Tx, r api.Resource, flavors map[string]api.FlavorSpec) api.QuotaSpec {
	switch r.Kind {
	case "instance":
		name := decode[api.InstanceSpec](r).Flavor
		f, ok := flavors[name]
		if !ok {
			if fr, err := tx.Get(api.Key{Kind: "flavor", Name: name}); err == nil {
				f = decode[api.FlavorSpec](fr)
			}
			flavors[name] = f
		}
		return api.QuotaSpec{VCPUs: f.VCPUs, RAMMiB: f.RAMMiB}
	case "volume":
		return api.QuotaSpec{Gigabytes: decode[api.VolumeSpec](r).SizeGiB}
	}
	return api.QuotaSpec{}
}

// CheckQuota refuses a write that would take its project over a limit
// in a dimension the write grows: a new resource of a counted kind, or an
// instance or volume that gets bigger. Shrinking or keeping is always
// allowed, even over a quota lowered since. Called in the commit
// transaction after admission, with the resource not yet stored.
func CheckQuota(tx *store.Tx, r api.Resource, prev *api.Resource) error {
	grow, ok := counted[r.Kind]
	if !ok || r.Project == "" {
		return nil
	}
	flavors := map[string]api.FlavorSpec{}
	var delta api.QuotaSpec
	if prev == nil {
		*grow(&delta) = 1
	}
	now, was := cost(tx, r, flavors), api.QuotaSpec{}
	if prev != nil {
		was = cost(tx, *prev, flavors)
	}
	delta.VCPUs, delta.RAMMiB, delta.Gigabytes = now.VCPUs-was.VCPUs, now.RAMMiB-was.RAMMiB, now.Gigabytes-was.Gigabytes
	if *grow(&delta) <= 0 && delta.VCPUs <= 0 && delta.RAMMiB <= 0 && delta.Gigabytes <= 0 {
		return nil
	}
	limits, err := Limits(tx, r.Project)
	if err != nil {
		return err
	}
	var used api.QuotaSpec
	if *grow(&delta) > 0 {
		*grow(&used) = tx.Count(r.Kind, r.Project)
	}
	if delta.VCPUs > 0 || delta.RAMMiB > 0 || delta.Gigabytes > 0 {
		u, err := Usage(tx, r.Project)
		if err != nil {
			return err
		}
		// The store still holds prev (or nothing): usage after is u+delta.
		used.VCPUs, used.RAMMiB, used.Gigabytes = u.VCPUs, u.RAMMiB, u.Gigabytes
	}
	dl, du, dd := dimensions(&limits), dimensions(&used), dimensions(&delta)
	for i := range dl {
		lim, d := *dl[i].v, *dd[i].v
		if d > 0 && lim >= 0 && *du[i].v+d > lim {
			return &api.Error{Code: http.StatusForbidden, Field: "quota." + dl[i].name,
				Message: fmt.Sprintf("project %q would hold %d %s, over its quota of %d", r.Project, *du[i].v+d, dl[i].name, lim)}
		}
	}
	return nil
}
