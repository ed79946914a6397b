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
