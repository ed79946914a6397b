//go:build !pacific

package main

import (
	"fmt"
	"os"
)

// Without the tag there is no Ceph to serve: say how to build it.
func main() {
	fmt.Fprintln(os.Stderr, "strata-rbd: built without Ceph support: go build -tags pacific ./agent/cmd/strata-rbd")
	os.Exit(1)
}
