// Package gossip is the membership layer shared by strata-agent and
// strata-coordinator: one hashicorp/memberlist (SWIM) pool per cluster.
//
// Each node advertises a small versioned Meta (role, zone, aggregates, VTEP,
// capacity, applied epoch). A Member keeps its own view of the pool fed by
// memberlist's callbacks, so dead and left hosts stay visible to operators
// (until reaped) instead of silently disappearing, and it signals changes to
// subscribers so the agent can rebuild its tunnel mesh without polling.
//
// The package starts no goroutines of its own; only memberlist's, which
// Shutdown stops.
package gossip
