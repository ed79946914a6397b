// Command strata-test-sweep removes what test processes that are gone left
// behind under the test prefixes (namespaces and the processes in them,
// lab links and Ceph test bridges, test directories in the temp dir and
// the daemons still running from them, subnet claims) and prints each
// thing it removed. `make test`
// runs it after the suite, since a -timeout or a panic skips t.Cleanup.
package main

import (
	"fmt"

	"github.com/strata-infra/strata/internal/testenv"
)

func main() {
	removed := testenv.Sweep(0)
	for _, l := range removed {
		fmt.Println("sweep: removed", l)
	}
	fmt.Printf("sweep: %d leftovers of finished test processes removed\n", len(removed))
}
