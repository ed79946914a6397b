package cephtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/rbd"
)

// helperBuild is the one strata-rbd of this test process.
var helperBuild struct {
	once sync.Once
	path string
	dir  string // what Helper made, "" when it used $STRATA_RBD_HELPER
	err  error
}

// Helper builds strata-rbd (the process that links librados and librbd,
// build tag `pacific`) once per test process, into a directory the sweep
// removes once the process is gone, and points rbd.HelperEnv at it, so
// every rbd.Conn of the tests (and of the agents they start) uses it.
// A $STRATA_RBD_HELPER already set is used as it is, and so is a
// strata-rbd beside the running binary (strata-lab in bin/).
func Helper() (string, error) {
	helperBuild.once.Do(func() {
		if p := os.Getenv(rbd.HelperEnv); p != "" {
			helperBuild.path = p
			return
		}
		// strata-lab runs from bin/, beside the strata-rbd make built.
		if exe, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(exe), "strata-rbd"); isFile(p) {
				helperBuild.path = p
				os.Setenv(rbd.HelperEnv, p)
				return
			}
		}
		dir, err := testenv.MkdirTemp("strata-rbd")
		if err != nil {
			helperBuild.err = err
			return
		}
		_, file, _, _ := runtime.Caller(0)
		start, out := time.Now(), filepath.Join(dir, "strata-rbd")
		cmd := exec.Command("go", "build", "-tags", "pacific", "-o", out, "./agent/cmd/strata-rbd")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		if b, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			helperBuild.err = fmt.Errorf("go build -tags pacific ./agent/cmd/strata-rbd (librados-dev, librbd-dev: bash agent/storage/testdeps.sh): %v\n%s", err, b)
			return
		}
		fmt.Printf("cephtest: strata-rbd built in %.1fs\n", time.Since(start).Seconds())
		helperBuild.path, helperBuild.dir = out, dir
		os.Setenv(rbd.HelperEnv, out)
	})
	return helperBuild.path, helperBuild.err
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// RemoveHelper removes the strata-rbd Helper built (Main and Lazy's stop
// call it after the tests; a test process that uses Start without them
// calls it from its TestMain).
func RemoveHelper() {
	if helperBuild.dir != "" {
		os.RemoveAll(helperBuild.dir)
	}
}
