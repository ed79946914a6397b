package scheduler

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// HostState is one host with what is placed and claimed on it, as filters
// and weighers see it (read-only for them).
type HostState struct {
	Host
	// Used is the resources of the instances placed or claimed here.
	Used Resources
	// Aggregates are the aggregates the host is in.
	Aggregates []*Aggregate
	// Failures are the recent build failures, oldest first.
	Failures []time.Time

	idx int // position in State.list
	// gen grows on every change of the host or its load.
	gen uint64
	// opDrained is the operator's drain (host config), kept apart from
	// the drain the agent announces in gossip.
	opDrained bool
}

func (hs *HostState) drained() bool { return hs.Drained || hs.opDrained }

// Aggregate is a named set of hosts with key/value metadata.
type Aggregate struct {
	Name     string
	Hosts    []string
	Metadata map[string]string
}

// group is a server group and where its members are (or are claimed).
type group struct {
	policy  string
	members map[string]string // instance -> host
	onHost  map[string]int    // host -> members there
}

// placement is one instance the scheduler counts on a host.
type placement struct {
	host      string
	resources Resources
	group     string
	claimed   bool // reserved by Place, not yet confirmed by a commit
}

// State is the scheduler's view of the cluster. It is safe for concurrent
// use: placements read under RLock and claim under the write lock.
type State struct {
	cfg     Config
	filters []Filter
	weigher []Weigher
	now     func() time.Time

	mu         sync.RWMutex
	hosts      map[string]*HostState
	list       []*HostState
	byZone     map[string][]*HostState
	aggregates map[string]*Aggregate
	// declared indexes the aggregates hosts' agent configs name:
	// aggregate -> hosts.
	declared  map[string]map[string]bool
	groups    map[string]*group
	placed    map[string]placement // instance -> placement
	rngPool   sync.Pool
	conflicts atomic.Uint64
}

// New returns an empty state with the standard filters and weighers.
func New(cfg Config) *State {
	if cfg.Retries <= 0 {
		cfg.Retries = 1
	}
	s := &State{cfg: cfg, now: time.Now,
		hosts: map[string]*HostState{}, byZone: map[string][]*HostState{},
		aggregates: map[string]*Aggregate{}, declared: map[string]map[string]bool{}, groups: map[string]*group{}, placed: map[string]placement{}}
	s.filters = StandardFilters(cfg.Ratios)
	s.weigher = StandardWeighers(cfg)
	s.rngPool.New = func() any { return rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())) }
	return s
}

// SetHosts makes the hosts' gossip attributes those given, in one lock
// hold; a host missing from hosts is no longer alive (its load stays).
// Hosts whose attributes did not change are left alone.
func (s *State) SetHosts(hosts []Host) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		seen[h.Name] = true
		if hs, ok := s.hosts[h.Name]; !ok || !sameHost(hs.Host, h) {
			s.setHost(h)
		}
	}
	for _, hs := range s.list {
		if !seen[hs.Name] && hs.Alive {
			hs.Alive = false
			hs.gen++
		}
	}
}

func sameHost(a, b Host) bool {
	return a.Name == b.Name && a.Alive == b.Alive && a.Drained == b.Drained && a.Zone == b.Zone &&
		a.Capacity == b.Capacity && a.Ratios == b.Ratios && a.Arch == b.Arch && a.Hypervisor == b.Hypervisor &&
		slices.Equal(a.Physnets, b.Physnets) && slices.Equal(a.Storage, b.Storage) &&
		slices.Equal(a.Aggregates, b.Aggregates)
}

// SetHost adds or updates a host (from gossip); used and claims stay.
func (s *State) SetHost(h Host) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setHost(h)
}

func (s *State) setHost(h Host) {
	hs, ok := s.hosts[h.Name]
	if !ok {
		hs = &HostState{idx: len(s.list)}
		s.hosts[h.Name] = hs
		s.list = append(s.list, hs)
	} else if hs.Zone != h.Zone {
		s.unindexZone(hs)
	}
	zoneChanged := !ok || hs.Zone != h.Zone
	s.undeclare(hs)
	h.Aggregates = slices.Clone(h.Aggregates)
	hs.Host = h
	hs.gen++
	if zoneChanged {
		s.byZone[h.Zone] = append(s.byZone[h.Zone], hs)
	}
	for _, a := range h.Aggregates {
		if s.declared[a] == nil {
			s.declared[a] = map[string]bool{}
		}
		s.declared[a][h.Name] = true
	}
	hs.Aggregates = s.aggregatesOf(h.Name)
}

// undeclare drops the aggregates hs's agent config declared from the
// index; s.mu held.
func (s *State) undeclare(hs *HostState) {
	for _, a := range hs.Host.Aggregates {
		delete(s.declared[a], hs.Name)
		if len(s.declared[a]) == 0 {
			delete(s.declared, a)
		}
	}
}

// SetDrained sets a host's drain flag from the operator's host config.
func (s *State) SetDrained(name string, drained bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hs, ok := s.hosts[name]
	if !ok {
		hs = s.addHost(name)
	}
	hs.opDrained = drained
	hs.gen++
}

// addHost adds a host gossip has not shown yet (known from a commit), so
// its load and drain are right when it joins; s.mu held.
func (s *State) addHost(name string) *HostState {
	hs := &HostState{idx: len(s.list), Host: Host{Name: name}}
	s.hosts[name] = hs
	s.list = append(s.list, hs)
	s.byZone[""] = append(s.byZone[""], hs)
	return hs
}

// RemoveHost forgets a host that left the pool for good.
func (s *State) RemoveHost(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hs, ok := s.hosts[name]
	if !ok {
		return
	}
	s.unindexZone(hs)
	s.undeclare(hs)
	last := s.list[len(s.list)-1]
	s.list[hs.idx], last.idx = last, hs.idx
	s.list = s.list[:len(s.list)-1]
	delete(s.hosts, name)
}

func (s *State) unindexZone(hs *HostState) {
	z := s.byZone[hs.Zone]
	if i := slices.Index(z, hs); i >= 0 {
		z = slices.Delete(z, i, i+1)
	}
	if len(z) == 0 {
		delete(s.byZone, hs.Zone)
	} else {
		s.byZone[hs.Zone] = z
	}
}

// SetAggregate adds or replaces an aggregate; nil metadata is fine.
func (s *State) SetAggregate(a Aggregate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.aggregates[a.Name]
	a.Hosts = slices.Clone(a.Hosts)
	s.aggregates[a.Name] = &a
	s.refreshAggregates(old, &a)
}

// RemoveAggregate deletes an aggregate.
func (s *State) RemoveAggregate(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.aggregates[name]
	delete(s.aggregates, name)
	s.refreshAggregates(old, nil)
}

// refreshAggregates recomputes the aggregates of every host an old or
// new aggregate lists, and of every host whose agent declares it.
func (s *State) refreshAggregates(aggs ...*Aggregate) {
	refresh := func(h string) {
		if hs, ok := s.hosts[h]; ok {
			hs.Aggregates = s.aggregatesOf(h)
			hs.gen++
		}
	}
	for _, a := range aggs {
		if a == nil {
			continue
		}
		for _, h := range a.Hosts {
			refresh(h)
		}
		for h := range s.declared[a.Name] {
			refresh(h)
		}
	}
}

// aggregatesOf is the aggregates that list host or that its agent
// config declares; s.mu held.
func (s *State) aggregatesOf(host string) []*Aggregate {
	var out []*Aggregate
	for name, a := range s.aggregates {
		if slices.Contains(a.Hosts, host) || s.declared[name][host] {
			out = append(out, a)
		}
	}
	return out
}

// SetGroup adds a server group or changes its policy.
func (s *State) SetGroup(key, policy string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g, ok := s.groups[key]; ok {
		g.policy = policy
		return
	}
	g := &group{policy: policy, members: map[string]string{}, onHost: map[string]int{}}
	s.groups[key] = g
	for in, p := range s.placed { // members recorded before their group
		if p.group == key {
			g.members[in] = p.host
			g.onHost[p.host]++
		}
	}
}

// RemoveGroup forgets a server group.
func (s *State) RemoveGroup(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.groups, key)
}

// Record counts an instance on a host, as a commit stored it; it confirms
// (or replaces) any claim held under the same instance key.
func (s *State) Record(instance, host string, r Resources, group string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unplace(instance)
	s.unplace(instance + moveSuffix)
	s.place(instance, placement{host: host, resources: r, group: group})
}

// Forget stops counting an instance (deleted, or its claim released).
func (s *State) Forget(instance string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unplace(instance)
	s.unplace(instance + moveSuffix)
}

// Release drops the claim held for instance, if it is still only a claim:
// the commit it was made for failed. A recorded placement stays.
func (s *State) Release(instance, host string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, key := range []string{instance + moveSuffix, instance} {
		if p, ok := s.placed[key]; ok && p.claimed && p.host == host {
			s.unplace(key)
			return
		}
	}
}

// place and unplace keep used and the group indexes in step; s.mu held.
func (s *State) place(instance string, p placement) {
	s.placed[instance] = p
	hs := s.hosts[p.host]
	if hs == nil {
		hs = s.addHost(p.host)
	}
	hs.Used = hs.Used.Plus(p.resources)
	hs.gen++
	if g := s.groups[p.group]; g != nil {
		g.members[instance] = p.host
		g.onHost[p.host]++
	}
}

func (s *State) unplace(instance string) {
	p, ok := s.placed[instance]
	if !ok {
		return
	}
	delete(s.placed, instance)
	if hs := s.hosts[p.host]; hs != nil {
		hs.Used = hs.Used.Sub(p.resources)
		hs.gen++
	}
	if g := s.groups[p.group]; g != nil {
		delete(g.members, instance)
		if g.onHost[p.host]--; g.onHost[p.host] <= 0 {
			delete(g.onHost, p.host)
		}
	}
}

// BuildFailed records a failed build on host; the failure weigher sinks
// hosts with recent failures (the last hour counts).
func (s *State) BuildFailed(host string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if hs, ok := s.hosts[host]; ok {
		hs.Failures = append(recentFailures(hs.Failures, s.now()), s.now())
	}
}

// failureWindow is how long a build failure weighs on a host.
const failureWindow = time.Hour

func recentFailures(f []time.Time, now time.Time) []time.Time {
	i := 0
	for i < len(f) && now.Sub(f[i]) > failureWindow {
		i++
	}
	return f[i:]
}

// Usage is a host's capacity and what is placed or claimed on it.
type Usage struct {
	Host      string
	Capacity  Resources
	Used      Resources
	Instances int
}

// Usage reports every host's usage, by name (for tests and the API).
func (s *State) Usage() map[string]Usage {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]Usage, len(s.hosts))
	for n, hs := range s.hosts {
		out[n] = Usage{Host: n, Capacity: hs.Capacity, Used: hs.Used}
	}
	for _, p := range s.placed {
		u := out[p.host]
		u.Instances++
		out[p.host] = u
	}
	return out
}

// GroupHosts returns where a group's members are, by instance.
func (s *State) GroupHosts(key string) map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	g := s.groups[key]
	if g == nil {
		return nil
	}
	out := make(map[string]string, len(g.members))
	for k, v := range g.members {
		out[k] = v
	}
	return out
}

// FitsAnyHost reports whether r fits on some alive, undrained host when
// it is empty: false means the request is larger than any host.
func (s *State) FitsAnyHost(r Resources) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := &Context{Req: &Request{Resources: r}}
	for _, hs := range s.list {
		empty := *hs
		empty.Used = Resources{}
		if s.passes(&empty, c) < 0 {
			return true
		}
	}
	return false
}

// HostStorage is the storage backends a host announced, and whether the
// scheduler knows the host.
func (s *State) HostStorage(name string) ([]string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	hs, ok := s.hosts[name]
	if !ok {
		return nil, false
	}
	return slices.Clone(hs.Storage), true
}
