// Package api holds the wire types the coordinator, the agents and stratactl
// share: resources, epochs and deltas, plans, host views and status reports.
package api

import (
	"encoding/json"
	"time"
)

// Resource is one object of desired state. Spec is kept as raw JSON so the
// store and the plan machinery stay generic; each kind decodes its own spec.
type Resource struct {
	Kind    string          `json:"kind"`
	Project string          `json:"project,omitempty"`
	Name    string          `json:"name"`
	Spec    json.RawMessage `json:"spec,omitempty"`
	// Epoch is the cluster epoch that last changed this resource.
	Epoch   uint64    `json:"epoch"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// Status is what the hosts last reported about this resource (a
	// host's error first); it is observed state and never bumps the epoch.
	Status *ResourceStatus `json:"status,omitempty"`
	// Hosts is the resource's state on each host whose plan carries it:
	// applied (at the host's applied epoch), pending, or error with the
	// host's message.
	Hosts []ResourceStatus `json:"hosts,omitempty"`
	// Placement is the scheduler's last word on an instance: where it
	// placed it, or why no host could take it (observed state too).
	Placement *PlacementStatus `json:"placement,omitempty"`
}

// Key identifies a resource within the cluster.
type Key struct {
	Kind    string `json:"kind"`
	Project string `json:"project,omitempty"`
	Name    string `json:"name"`
}

// Key returns the resource's identity.
func (r Resource) Key() Key { return Key{Kind: r.Kind, Project: r.Project, Name: r.Name} }

// String renders the key as kind/project/name (kind/name when global).
func (k Key) String() string {
	if k.Project == "" {
		return k.Kind + "/" + k.Name
	}
	return k.Kind + "/" + k.Project + "/" + k.Name
}

// States of a resource on a host.
const (
	ResourceApplied = "applied" // the host applied the resource's epoch
	ResourcePending = "pending" // the host has not reached the resource's epoch yet
	ResourceError   = "error"   // the host could not apply it; Message says why
)

// HoldsAt reports whether the host has the resource as of epoch: it
// applied it, or reports it in a state of the resource's own (an
// instance's host reports it running or stopped instead of applied).
func (s ResourceStatus) HoldsAt(epoch uint64) bool {
	return s.Epoch >= epoch && s.State != ResourcePending && s.State != ResourceError
}

// ResourceStatus is the observed state of one resource on one host.
type ResourceStatus struct {
	Host    string    `json:"host"`
	State   string    `json:"state"`
	Message string    `json:"message,omitempty"`
	Epoch   uint64    `json:"epoch"`
	Updated time.Time `json:"updated"`
	// Detail carries kind-specific observed facts (addresses, console tail).
	Detail json.RawMessage `json:"detail,omitempty"`
}

// Placement outcomes.
const (
	PlacementPlaced  = "placed"
	PlacementRefused = "refused"
)

// PlacementStatus is the outcome of an instance's latest placement: a
// create, resize or migration the scheduler answered, or a move after its
// build failed on a host. A refusal says how many hosts each filter
// removed ("0 of 3 hosts: 1 drained or dead, 2 out of RAM").
type PlacementStatus struct {
	State   string `json:"state"`
	Host    string `json:"host,omitempty"`
	Message string `json:"message,omitempty"`
	// TotalHosts and Removed are the refusal's counts, filter by filter.
	TotalHosts int                `json:"total_hosts,omitempty"`
	Removed    []PlacementRemoval `json:"removed,omitempty"`
	Updated    time.Time          `json:"updated"`
}

// PlacementRemoval is how many hosts one filter removed, and why.
type PlacementRemoval struct {
	Reason string `json:"reason"`
	Hosts  int    `json:"hosts"`
}

// ResourceRequest is the body of a create or update call.
type ResourceRequest struct {
	Name string          `json:"name"`
	Spec json.RawMessage `json:"spec,omitempty"`
}

// PutResult answers a create or update: Changed is false when the stored
// spec was already the one asked for, and then the epoch did not move.
type PutResult struct {
	Resource Resource `json:"resource"`
	Changed  bool     `json:"changed"`
	Epoch    uint64   `json:"epoch"`
	// Kept names the spec fields the request left out that an update kept
	// from the stored version (values the coordinator assigned: a VNI, a
	// MAC, addresses, a host). Every other omitted field took its default.
	Kept []string `json:"kept,omitempty"`
}

// DeleteResult answers a delete.
type DeleteResult struct {
	Deleted bool   `json:"deleted"`
	Epoch   uint64 `json:"epoch"`
}

// ProjectSpec is the spec of kind "project".
type ProjectSpec struct {
	Description string `json:"description,omitempty"`
}

// DryRunRequest is the body of POST /v1/dry-run: resources to admit in
// order, as an apply of a manifest would write them one after another.
type DryRunRequest struct {
	Resources []DryRunResource `json:"resources"`
}

// DryRunResource is one resource of a dry run.
type DryRunResource struct {
	Kind    string          `json:"kind"`
	Project string          `json:"project,omitempty"`
	Name    string          `json:"name"`
	Spec    json.RawMessage `json:"spec,omitempty"`
}

// DryRunResult answers a dry run: nothing was stored and no epoch moved.
type DryRunResult struct {
	Results []DryRunItem `json:"results"`
}

// Dry-run actions.
const (
	DryRunCreated   = "created"
	DryRunUpdated   = "updated"
	DryRunUnchanged = "unchanged"
)

// DryRunItem is what one resource's write would do: the spec stored now
// (none for a new resource) and the spec it would store once admitted,
// with the assigned fields it would keep.
type DryRunItem struct {
	Kind    string          `json:"kind"`
	Project string          `json:"project,omitempty"`
	Name    string          `json:"name"`
	Action  string          `json:"action"`
	Before  json.RawMessage `json:"before,omitempty"`
	After   json.RawMessage `json:"after"`
	Kept    []string        `json:"kept,omitempty"`
}
