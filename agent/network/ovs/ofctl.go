package ovs

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// ofctl runs ovs-ofctl against one bridge's OpenFlow management socket.
// Flows are replaced through `--bundle replace-flows`: one OpenFlow 1.3
// bundle that adds, changes and deletes in one atomic commit, so stale
// flows go only together with the new set coming in.
type ofctl struct {
	bin    string // ovs-ofctl
	target string // unix:<rundir>/<bridge>.mgmt
}

func (o ofctl) run(ctx context.Context, stdin string, args ...string) (string, error) {
	args = append([]string{"-O", "OpenFlow13"}, args...)
	cmd := exec.CommandContext(ctx, o.bin, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("ovs-ofctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Replace makes the bridge's flow table exactly flows, atomically.
func (o ofctl) Replace(ctx context.Context, flows string) error {
	_, err := o.run(ctx, flows, "--bundle", "replace-flows", o.target, "-")
	return err
}

// Dump returns the bridge's flows as ovs-ofctl prints them, without
// statistics: tests compare two dumps to prove nothing changed.
func (o ofctl) Dump(ctx context.Context) (string, error) {
	return o.run(ctx, "", "--no-stats", "--sort", "dump-flows", o.target)
}
