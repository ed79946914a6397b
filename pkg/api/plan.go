package api

// Op is what a change did to a resource.
type Op string

const (
	OpPut    Op = "put"
	OpDelete Op = "delete"
)

// Change is one resource written or removed by a commit.
type Change struct {
	Op       Op       `json:"op"`
	Resource Resource `json:"resource"`
}

// Delta is everything one commit changed; its Epoch is the epoch the commit
// created (commits and epochs are one to one).
type Delta struct {
	Epoch   uint64   `json:"epoch"`
	Changes []Change `json:"changes"`
}

// Plan is the answer to a host's watch: either the deltas after the epoch it
// asked from, or, when those are no longer retained, the full plan.
type Plan struct {
	Host  string `json:"host"`
	Epoch uint64 `json:"epoch"`
	// Full is true when Resources holds the whole plan at Epoch.
	Full bool `json:"full"`
	// History names the store's line of epochs; it changes when a backup
	// is restored. A host sends it back (?history=), so the coordinator
	// tells a host from before a restore (full plan, epoch moved past
	// it) from one ahead of an older copy of the store (refused).
	History   string     `json:"history,omitempty"`
	Resources []Resource `json:"resources,omitempty"`
	Deltas    []Delta    `json:"deltas,omitempty"`
	// Storage is true when this is the storage plan (asked with
	// ?storage=true by a host that runs the storage controller): besides
	// the host's own plan it holds every volume and volume snapshot. Only
	// a storage plan may drive the deletion of images it does not hold.
	Storage bool `json:"storage,omitempty"`
}
