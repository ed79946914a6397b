package scheduler

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
)

// Conflicts counts claims that found their host changed since it was
// ranked (each one retried).
func (s *State) Conflicts() uint64 { return s.conflicts.Load() }

// Removal is how many hosts one filter removed.
type Removal struct {
	Reason string
	Hosts  int
}

// NoHostError says why no host can take a request: how many hosts each
// filter removed, in filter order ("0 of 40 hosts: 12 drained or dead, 20
// in another zone, 8 out of RAM").
type NoHostError struct {
	Total   int
	Removed []Removal
	// Host is set when the request named one host.
	Host string
}

func (e *NoHostError) Error() string {
	var b strings.Builder
	if e.Host != "" {
		fmt.Fprintf(&b, "host %s cannot take it: ", e.Host)
	}
	fmt.Fprintf(&b, "0 of %d hosts", e.Total)
	if e.Total == 0 {
		b.WriteString(": no host in the pool")
		if e.Host != "" {
			b.WriteString(" by that name")
		}
		return b.String()
	}
	for i, r := range e.Removed {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d %s", r.Hosts, r.Reason)
	}
	return b.String()
}

// Claim is a host reserved for an instance until a commit confirms it
// (Record) or fails (Release).
type Claim struct {
	Instance, Host string
	// Attempts is how many times the placement had to choose.
	Attempts int
}

// Place chooses a host for req and claims it; the error is a
// *NoHostError when no host fits. Attempts are optimistic (rank under the
// read lock, verify and reserve under the write lock); after Retries lost
// races the last attempt ranks and claims under the write lock, so a
// placement always ends.
func (s *State) Place(req Request) (Claim, error) {
	for attempt := 1; attempt <= s.cfg.Retries; attempt++ {
		s.mu.RLock()
		host, err := s.pick(&req)
		s.mu.RUnlock()
		if err != nil {
			return Claim{}, err
		}
		s.mu.Lock()
		ok := s.claim(&req, host)
		s.mu.Unlock()
		if ok {
			return Claim{Instance: req.Instance, Host: host, Attempts: attempt}, nil
		}
		s.conflicts.Add(1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	host, err := s.pick(&req)
	if err != nil {
		return Claim{}, err
	}
	if !s.claim(&req, host) {
		return Claim{}, fmt.Errorf("claim %s on %s: the host it was ranked under changed", req.Instance, host) // unreachable: pick and claim share the lock
	}
	return Claim{Instance: req.Instance, Host: host, Attempts: s.cfg.Retries + 1}, nil
}

// context builds a placement's context; s.mu held (read or write). The
// request's own instance does not count against itself (a resize).
func (s *State) context(req *Request) *Context {
	c := &Context{Req: req, Now: s.now()}
	g := s.groups[req.Group]
	if req.Group == "" || g == nil {
		return c
	}
	c.Policy, c.OnHost = g.policy, g.onHost
	if self, ok := g.members[req.Instance]; ok {
		c.OnHost = make(map[string]int, len(g.onHost))
		for h, n := range g.onHost {
			c.OnHost[h] = n
		}
		if c.OnHost[self]--; c.OnHost[self] <= 0 {
			delete(c.OnHost, self)
		}
	}
	return c
}

// candidates is where a request may land, from the static indexes: the
// named host, the hosts of an affinity group's members, the zone's hosts,
// or all. The filters still run on each.
func (s *State) candidates(req *Request, c *Context) []*HostState {
	switch {
	case req.Host != "":
		if hs, ok := s.hosts[req.Host]; ok {
			return []*HostState{hs}
		}
		return nil
	case c.Policy == Affinity && len(c.OnHost) > 0:
		out := make([]*HostState, 0, len(c.OnHost))
		for h := range c.OnHost {
			if hs, ok := s.hosts[h]; ok {
				out = append(out, hs)
			}
		}
		return out
	case req.Zone != "":
		return s.byZone[req.Zone]
	}
	return s.list
}

// pick filters and ranks, and returns the best host; s.mu held.
func (s *State) pick(req *Request) (string, error) {
	c := s.context(req)
	cands := s.candidates(req, c)
	limit := s.cfg.Sample
	if limit <= 0 {
		limit = len(cands)
	}
	rng := s.rngPool.Get().(*rand.Rand)
	start := 0
	if len(cands) > 0 {
		start = rng.IntN(len(cands))
	}
	s.rngPool.Put(rng)
	feasible := make([]*HostState, 0, min(limit, len(cands)))
	for i := 0; i < len(cands) && len(feasible) < limit; i++ {
		hs := cands[(start+i)%len(cands)]
		if !req.avoids(hs.Name) && s.passes(hs, c) < 0 {
			feasible = append(feasible, hs)
		}
	}
	if len(feasible) == 0 {
		return "", s.explain(req, c)
	}
	return s.rank(feasible, c).Name, nil
}

// passes returns -1 when hs passes every filter, else the index of the
// first filter it fails.
func (s *State) passes(hs *HostState, c *Context) int {
	for i, f := range s.filters {
		if !f.Pass(hs, c) {
			return i
		}
	}
	return -1
}

// explain counts, over every host the request could have used, the hosts
// each filter removed (each against the first it fails).
func (s *State) explain(req *Request, c *Context) error {
	hosts := s.list
	e := &NoHostError{Host: req.Host}
	if req.Host != "" {
		hosts = nil
		if hs, ok := s.hosts[req.Host]; ok {
			hosts = []*HostState{hs}
		}
	}
	counts := make([]int, len(s.filters))
	avoided, failed := 0, 0
	for _, hs := range hosts {
		switch {
		case hs.Name == req.Avoid:
			avoided++
			continue
		case slices.Contains(req.Failed, hs.Name):
			failed++
			continue
		}
		if i := s.passes(hs, c); i >= 0 {
			counts[i]++
		}
	}
	e.Total = len(hosts)
	if avoided > 0 {
		e.Removed = append(e.Removed, Removal{Reason: "the instance's current host", Hosts: avoided})
	}
	if failed > 0 {
		e.Removed = append(e.Removed, Removal{Reason: "where its build failed", Hosts: failed})
	}
	for i, n := range counts {
		if n > 0 {
			e.Removed = append(e.Removed, Removal{Reason: s.filters[i].Reason(c), Hosts: n})
		}
	}
	return e
}

// rank returns the feasible host with the highest weighed score.
func (s *State) rank(hosts []*HostState, c *Context) *HostState {
	if len(hosts) == 1 {
		return hosts[0]
	}
	score := make([]float64, len(hosts))
	raw := make([]float64, len(hosts))
	for _, w := range s.weigher {
		m := w.Multiplier()
		if m == 0 {
			continue
		}
		lo, hi := math.Inf(1), math.Inf(-1)
		for i, hs := range hosts {
			raw[i] = w.Weigh(hs, c)
			lo, hi = min(lo, raw[i]), max(hi, raw[i])
		}
		if hi == lo {
			continue // no weigher can tell these hosts apart
		}
		for i := range hosts {
			score[i] += m * (raw[i] - lo) / (hi - lo)
		}
	}
	best := 0
	for i := range hosts {
		if score[i] > score[best] {
			best = i
		}
	}
	return hosts[best]
}

// claim verifies that host still takes req (the state may have changed
// since pick released the read lock) and reserves it; s.mu write-held. An instance placed already (a resize or migration) keeps its old
// placement counted until the commit: the claim is held beside it.
func (s *State) claim(req *Request, host string) bool {
	hs, ok := s.hosts[host]
	if !ok || req.avoids(host) || s.passes(hs, s.context(req)) >= 0 {
		return false
	}
	key := req.Instance
	if p, ok := s.placed[key]; ok && !p.claimed {
		key += moveSuffix
	}
	s.unplace(key)
	s.place(key, placement{host: host, resources: req.Resources, group: req.Group, claimed: true})
	return true
}

// avoids says whether the request must not land on host.
func (r *Request) avoids(host string) bool {
	return host == r.Avoid || slices.Contains(r.Failed, host)
}

// moveSuffix keys the claim of an instance that is placed already.
const moveSuffix = "\x00move"
