// Package registry describes the resource kinds the coordinator serves: how
// each is addressed, validated, ordered for apply, and which hosts' plans
// carry it. Each capability adds its kinds here; the API, the store and
// stratactl stay generic.
package registry

import (
	"fmt"
	"sort"

	"github.com/strata-infra/strata/coordinator/scheduler"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/contract"
)

// Scope says where a kind's names live.
type Scope int

const (
	// Global kinds are cluster-wide (projects, flavors, external networks).
	Global Scope = iota
	// Project kinds live inside one project.
	Project
)

// Kind is the description of one resource kind.
type Kind struct {
	Name   string // singular, as in YAML "kind:"
	Plural string // URL segment
	Scope  Scope
	// Order sorts kinds for apply: lower first; delete goes in reverse.
	Order int
	// AdminWrite restricts create, update and delete to admin tokens.
	AdminWrite bool
	// PublicRead lets every project token read a Global kind.
	PublicRead bool
	// NewSpec returns a pointer to a zero spec, decoded strictly.
	NewSpec func() any
	// Admit validates a spec inside the commit transaction (references,
	// uniqueness) and may fill in allocations; errors are *api.FieldError
	// for bad input or *Conflict for clashes with stored state.
	Admit func(a *Admission, r *api.Resource, spec any) error
	// BeforeDelete refuses a delete that would orphan other resources, or
	// changes the resources that depend on it in the same commit.
	BeforeDelete func(a *Admission, r api.Resource) error
	// OnHost says whether the resource belongs in host's plan; nil means
	// every host gets it.
	OnHost func(r api.Resource, host string) bool
	// Schema is the spec's JSON Schema for the OpenAPI document.
	Schema map[string]any
	// Assigned are the spec fields the coordinator fills in (a VNI, a MAC,
	// addresses, placement, counters). An update that omits one keeps the
	// stored value and says so (api.PutResult.Kept); every other omitted
	// field takes its default, never the stored value.
	Assigned []string
}

// Conflict is a refusal because of stored state (HTTP 409).
type Conflict struct{ Message string }

func (c *Conflict) Error() string { return c.Message }

// Conflictf builds a Conflict.
func Conflictf(format string, args ...any) *Conflict {
	return &Conflict{Message: fmt.Sprintf(format, args...)}
}

// Settings are the cluster-wide parameters admission works with.
type Settings struct {
	// VNIMin and VNIMax bound the VXLAN IDs the coordinator allocates.
	VNIMin, VNIMax uint32
	// UnderlayMTU is the hosts' underlay MTU; tenant MTUs are 50 less.
	UnderlayMTU int
}

// DefaultSettings suit a plain 1500-byte underlay.
func DefaultSettings() Settings {
	return Settings{VNIMin: 1000, VNIMax: 99999, UnderlayMTU: 1500}
}

// Admission is what Admit and BeforeDelete see: the commit's transaction,
// who asks, the stored version being replaced, and the cluster around.
type Admission struct {
	Tx       *store.Tx
	Admin    bool
	Prev     *api.Resource
	Settings Settings
	// Hosts is the gossip view, for placement decisions.
	Hosts func() []api.Host
	// Facts are what hosts reported that placement and the contract
	// need (the physical networks each maps); nil when not known.
	Facts *contract.Facts
	// Scheduler places instances.
	Scheduler *scheduler.State
	// System is set on the coordinator's own writes (moving an instance
	// whose build failed), which may set what no client may.
	System bool
	// Evacuate is a fenced host whose routers and DHCP servers this
	// (system) write moves: a router or network placed there is placed
	// again among the alive hosts, as if it had none.
	Evacuate string
}

// Registry is the set of kinds a coordinator serves.
type Registry struct {
	byName   map[string]*Kind
	Settings Settings
	// Scheduler places instances; Attach keeps it current from a store.
	Scheduler *scheduler.State
}

// New returns a registry holding the given kinds.
func New(kinds ...*Kind) (*Registry, error) {
	r := &Registry{byName: map[string]*Kind{}, Settings: DefaultSettings(), Scheduler: scheduler.New(scheduler.DefaultConfig())}
	for _, k := range kinds {
		if err := r.Add(k); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Add registers a kind.
func (r *Registry) Add(k *Kind) error {
	if k.Name == "" || k.Plural == "" || k.NewSpec == nil {
		return fmt.Errorf("kind %q: name, plural and spec are required", k.Name)
	}
	if _, dup := r.byName[k.Name]; dup {
		return fmt.Errorf("kind %q registered twice", k.Name)
	}
	r.byName[k.Name] = k
	return nil
}

// Get returns a kind by its singular name.
func (r *Registry) Get(name string) (*Kind, bool) {
	k, ok := r.byName[name]
	return k, ok
}

// Kinds returns every kind in apply order.
func (r *Registry) Kinds() []*Kind {
	out := make([]*Kind, 0, len(r.byName))
	for _, k := range r.byName {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Order != out[j].Order {
			return out[i].Order < out[j].Order
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// PlanFilter returns the store filter for host's plan.
// PlacedOn says whether a resource is placed on host: a kind with a
// placement (OnHost) other than the host's own configuration.
func (r *Registry) PlacedOn(res api.Resource, host string) bool {
	k, ok := r.byName[res.Kind]
	return ok && k.OnHost != nil && k.Name != "hostconfig" && k.OnHost(res, host)
}

func (r *Registry) PlanFilter(host string) store.Filter {
	return func(res api.Resource) bool {
		k, ok := r.byName[res.Kind]
		if !ok {
			return false
		}
		return k.OnHost == nil || k.OnHost(res, host)
	}
}
