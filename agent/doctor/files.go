package doctor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// agentFiles checks the agent's own files: a non-empty token, a gossip key
// only root can read, a state dir that exists or can be made. These paths
// are real paths (not under Env.Root): they come from the agent's config.
func (e Env) agentFiles(f Files) []Result {
	var rs []Result
	if f.TokenFile != "" {
		r := Result{Check: "file:token", Required: true, Fix: "write the agent token (stratactl tokens create --role agent --host <this host>) to " + f.TokenFile + " with mode 0600"}
		b, err := os.ReadFile(f.TokenFile)
		switch {
		case err != nil:
			r.Status, r.Detail = Missing, err.Error()
		case strings.TrimSpace(string(b)) == "":
			r.Status, r.Detail = Missing, f.TokenFile+" is empty"
		default:
			r.Status, r.Detail = OK, f.TokenFile
		}
		rs = append(rs, r)
	}
	if f.GossipKey != "" {
		r := Result{Check: "file:gossip-key", Required: true, Fix: "install the cluster's gossip key (base64) at " + f.GossipKey + " and chmod 0600 it"}
		st, err := os.Stat(f.GossipKey)
		switch {
		case err != nil:
			r.Status, r.Detail = Missing, err.Error()
		case st.Mode().Perm()&0o077 != 0:
			r.Status, r.Detail = Missing, fmt.Sprintf("%s has mode %04o: others can read the cluster key", f.GossipKey, st.Mode().Perm())
		default:
			r.Status, r.Detail = OK, fmt.Sprintf("%s (mode %04o)", f.GossipKey, st.Mode().Perm())
		}
		rs = append(rs, r)
	}
	if f.StateDir != "" {
		r := Result{Check: "dir:state", Required: true, Fix: "mkdir -p -m 0711 " + f.StateDir}
		dir := f.StateDir
		for {
			if st, err := os.Stat(dir); err == nil {
				if st.IsDir() {
					r.Status, r.Detail = OK, f.StateDir
					if dir != f.StateDir {
						r.Detail = f.StateDir + " (made at start under " + dir + ")"
					}
				} else {
					r.Status, r.Detail = Missing, dir+" is not a directory"
				}
				break
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				r.Status, r.Detail = Missing, "no existing parent of "+f.StateDir
				break
			}
			dir = parent
		}
		rs = append(rs, r)
	}
	return rs
}
