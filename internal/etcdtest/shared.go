package etcdtest

import (
	"fmt"
	"os"
	"testing"

	"github.com/strata-infra/strata/internal/testenv"
)

// The one cluster of a test package, started by Main.
var (
	shared    *Cluster
	sharedErr error
)

// Main starts one n-member cluster for the whole test package (call it
// from TestMain), runs the tests, stops the members by PID and removes
// their data dirs. When etcd cannot start, the tests that need it skip
// (or fail under STRATA_STRICT=1) with the reason; the others still run.
func Main(m *testing.M, n int) {
	code := runMain(m, n)
	if os.Geteuid() == 0 {
		for _, l := range testenv.Sweep(os.Getpid()) {
			fmt.Fprintln(os.Stderr, "testenv sweep: removed", l)
		}
	}
	os.Exit(code)
}

func runMain(m *testing.M, n int) int {
	if why := Available(); why != "" {
		sharedErr = fmt.Errorf("%s", why)
		return m.Run()
	}
	dir, err := testenv.MkdirTemp("etcd")
	if err != nil {
		sharedErr = err
		return m.Run()
	}
	defer os.RemoveAll(dir)
	shared, sharedErr = Start(dir, n)
	if sharedErr == nil {
		fmt.Printf("etcdtest: %d-member cluster at %v up in %.1fs\n", n, shared.Endpoints(), shared.BringUp.Seconds())
		defer shared.Stop()
	}
	return m.Run()
}

// Require returns the package's cluster, or ends the test with the reason
// it is missing (a skip, or a failure under STRATA_STRICT=1).
func Require(t testing.TB) *Cluster {
	t.Helper()
	if shared != nil {
		return shared
	}
	msg := "TestMain did not call etcdtest.Main"
	if sharedErr != nil {
		msg = sharedErr.Error()
	}
	testenv.Missing(t, "etcd", msg)
	return nil
}
