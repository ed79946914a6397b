package cephtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/strata-infra/strata/internal/testenv"
)

// The one cluster of a test package, started by Main, or by the first
// Require after Lazy.
var (
	shared    *Cluster
	sharedErr error
	lazyStart func()
	lazyOnce  sync.Once
)

// Lazy arranges for the package's cluster to start at the first Require
// (a package where few tests need Ceph: a run of the others pays nothing)
// and returns the function that stops it and removes its files, for
// TestMain to call after m.Run.
func Lazy(tag string, pools ...string) (stop func()) {
	var dir string
	lazyStart = func() {
		if why := Available(); why != "" {
			sharedErr = fmt.Errorf("%s", why)
			return
		}
		dir, sharedErr = testenv.MkdirTemp(tag + "-ceph")
		if sharedErr != nil {
			return
		}
		shared, sharedErr = Start(context.Background(), Options{
			Dir: dir, Name: fmt.Sprintf("%s%d", tag, os.Getpid()), Pools: pools,
		})
		if sharedErr == nil {
			fmt.Printf("cephtest: cluster at %s up in %.1fs (pools %v)\n", shared.MonHost(), shared.BringUp.Seconds(), pools)
		}
	}
	return func() {
		defer RemoveHelper()
		if shared != nil {
			shared.Stop()
		}
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
}

// Main starts one cluster for the whole test package (call it from
// TestMain), runs the tests and stops the cluster by PID afterwards. When
// the cluster cannot start, the tests that need it skip (or fail under
// STRATA_STRICT=1) with the reason; the others still run.
func Main(m *testing.M, tag string, pools ...string) {
	os.Exit(runMain(m, tag, pools))
}

func runMain(m *testing.M, tag string, pools []string) int {
	defer RemoveHelper()
	if why := Available(); why != "" {
		sharedErr = fmt.Errorf("%s", why)
		return m.Run()
	}
	dir, err := testenv.MkdirTemp(tag + "-ceph")
	if err != nil {
		sharedErr = err
		return m.Run()
	}
	defer os.RemoveAll(dir)
	shared, sharedErr = Start(context.Background(), Options{
		Dir: dir, Name: fmt.Sprintf("%s%d", tag, os.Getpid()), Pools: pools,
	})
	if sharedErr == nil {
		fmt.Printf("cephtest: cluster at %s up in %.1fs (pools %v)\n", shared.MonHost(), shared.BringUp.Seconds(), pools)
		defer shared.Stop()
	}
	return m.Run()
}

// Require returns the package's cluster, or skips the test with the reason
// it is missing (fails under STRATA_STRICT=1).
func Require(t testing.TB) *Cluster {
	t.Helper()
	if lazyStart != nil {
		lazyOnce.Do(lazyStart)
	}
	if shared != nil {
		return shared
	}
	msg := "TestMain did not call cephtest.Main"
	if sharedErr != nil {
		msg = sharedErr.Error()
	}
	testenv.Missing(t, "Ceph cluster", msg)
	return nil
}
