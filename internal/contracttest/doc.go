// Package contracttest proves the contract between the coordinator and the
// hosts: every state the API commits maps, on every host, to a desired
// state the host's own checks accept. It holds only tests; it imports both
// sides, which no package under pkg/, agent/ or coordinator/ may.
package contracttest
