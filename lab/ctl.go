package lab

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Ctl runs stratactl against the lab as its admin, as an operator would,
// with -o json, and decodes the answer into out (nil to discard it).
func (l *Lab) Ctl(out any, args ...string) error {
	tok, err := l.AdminToken()
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(l.BinDir, "stratactl"), append(args, "-o", "json")...)
	cmd.Env = append(os.Environ(), "STRATA_ENDPOINT="+l.Endpoint(), "STRATA_TOKEN="+tok, "STRATA_CA_FILE="+l.CAFile())
	cmd.Env = append(cmd.Env, l.CephEnv()...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("stratactl %s: %w: %s%s", strings.Join(args, " "), err, b, stderr.String())
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("stratactl %s: %w: %s", strings.Join(args, " "), err, b)
		}
	}
	return nil
}

// CtlText runs stratactl against the lab as its admin, with its table
// output, and returns what it printed (stdout, then stderr).
func (l *Lab) CtlText(args ...string) (string, error) {
	tok, err := l.AdminToken()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(filepath.Join(l.BinDir, "stratactl"), args...)
	cmd.Env = append(os.Environ(), "STRATA_ENDPOINT="+l.Endpoint(), "STRATA_TOKEN="+tok, "STRATA_CA_FILE="+l.CAFile())
	cmd.Env = append(cmd.Env, l.CephEnv()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("stratactl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// CephEnv is the environment that points stratactl images import at the
// lab's Ceph, as the operator's shell would; none without Ceph.
func (l *Lab) CephEnv() []string {
	if l.Ceph == nil {
		return nil
	}
	return []string{"STRATA_CEPH_MON_HOST=" + l.Ceph.MonHost, "STRATA_CEPH_USER=" + l.Ceph.User,
		"STRATA_CEPH_KEYRING=" + l.Ceph.Keyring, "STRATA_IMAGES_POOL=" + l.Ceph.ImagesPool}
}
