package api

// QuotaSpec is the spec of kind "quota" (admin, global, named by the
// project it limits): how much one project may hold. A limit left at 0
// takes its default (DefaultQuota); -1 means no limit.
type QuotaSpec struct {
	Networks    int `json:"networks,omitempty"`
	Ports       int `json:"ports,omitempty"`
	Routers     int `json:"routers,omitempty"`
	FloatingIPs int `json:"floatingips,omitempty"`
	Instances   int `json:"instances,omitempty"`
	VCPUs       int `json:"vcpus,omitempty"`
	RAMMiB      int `json:"ram_mib,omitempty"`
	Volumes     int `json:"volumes,omitempty"`
	Gigabytes   int `json:"gigabytes,omitempty"`
}

// DefaultQuota is what a project may hold when no quota names it.
var DefaultQuota = QuotaSpec{
	Networks: 100, Ports: 1000, Routers: 20, FloatingIPs: 100,
	Instances: 100, VCPUs: 400, RAMMiB: 1 << 20, Volumes: 200, Gigabytes: 20000,
}

// WithDefaults fills the limits left at 0 from DefaultQuota.
func (q QuotaSpec) WithDefaults() QuotaSpec {
	d := DefaultQuota
	for _, f := range []struct{ v, def *int }{
		{&q.Networks, &d.Networks}, {&q.Ports, &d.Ports}, {&q.Routers, &d.Routers},
		{&q.FloatingIPs, &d.FloatingIPs}, {&q.Instances, &d.Instances}, {&q.VCPUs, &d.VCPUs},
		{&q.RAMMiB, &d.RAMMiB}, {&q.Volumes, &d.Volumes}, {&q.Gigabytes, &d.Gigabytes},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	return q
}

// QuotaUsage answers GET /v1/projects/{project}/quota: the project's
// limits (defaults filled in) and what it holds now, in the same units.
type QuotaUsage struct {
	Project string    `json:"project"`
	Limits  QuotaSpec `json:"limits"`
	Usage   QuotaSpec `json:"usage"`
}
