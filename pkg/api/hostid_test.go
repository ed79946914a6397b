package api_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/computespec"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// TestInstanceIDsNeverCollide: the IDs hosts derive for instances and
// volumes differ for every two (project, name) pairs, whatever the names
// share: long common starts (the readable part is cut), a project whose
// name is another's with a suffix, hyphens moved across the boundary.
// Each ID is one a host accepts. The pairs are random but the seed is
// printed, so a failure replays.
func TestInstanceIDsNeverCollide(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	label := func(n int) string {
		const chars = "abcdefghijklmnopqrstuvwxyz0123456789-"
		b := make([]byte, n)
		for i := range b {
			b[i] = chars[rng.IntN(len(chars))]
			if (i == 0 || i == n-1) && b[i] == '-' {
				b[i] = 'x'
			}
		}
		return string(b)
	}
	type pair struct{ project, name string }
	var pairs []pair
	long := strings.Repeat("web-server-", 5) // 55 characters in common
	for i := 0; i < 20000; i++ {
		p := label(1 + rng.IntN(12))
		switch i % 4 {
		case 0: // names equal in their first 55 characters
			pairs = append(pairs, pair{p, long + label(1+rng.IntN(8))})
		case 1: // the same name in many projects
			pairs = append(pairs, pair{p, "vm"})
		case 2: // a hyphen moved between project and name
			n := label(1 + rng.IntN(10))
			pairs = append(pairs, pair{p, n}, pair{p + "-" + n, "x"}, pair{p, n + "-x"})
		default:
			pairs = append(pairs, pair{p, label(1 + rng.IntN(63))})
		}
	}
	seen := map[string]pair{}
	images := map[string]pair{}
	for _, pr := range pairs {
		if api.ValidateName("name", pr.name) != nil || api.ValidateName("project", pr.project) != nil {
			continue
		}
		id := api.InstanceID(pr.project, pr.name)
		if id != api.InstanceID(pr.project, pr.name) {
			t.Fatalf("InstanceID(%q, %q) is not stable", pr.project, pr.name)
		}
		if !computespec.ValidID(id) || len(id) > api.MaxHostIDLen {
			t.Fatalf("InstanceID(%q, %q) = %q is not an ID hosts accept", pr.project, pr.name, id)
		}
		if o, dup := seen[id]; dup && o != pr {
			t.Fatalf("instances %v and %v share ID %q", o, pr, id)
		}
		seen[id] = pr
		img := storagespec.VolumeImage(pr.project, pr.name)
		if o, dup := images[img]; dup && o != pr {
			t.Fatalf("volumes %v and %v share image %q", o, pr, img)
		}
		images[img] = pr
	}
	if len(seen) < 10000 {
		t.Fatalf("only %d distinct pairs were tried", len(seen))
	}
}
