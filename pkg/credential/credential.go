// Package credential finds the secrets systemd hands a service through
// LoadCredential= (in $CREDENTIALS_DIRECTORY, readable by that service
// only), so the files on disk can stay root-owned whatever user a daemon
// runs as.
package credential

import (
	"os"
	"path/filepath"
)

// DirEnv is the variable systemd sets to the service's credentials.
const DirEnv = "CREDENTIALS_DIRECTORY"

// Path is the credential called name when systemd passed one, else
// configured (the path from the daemon's config, used outside systemd).
func Path(name, configured string) string {
	dir := os.Getenv(DirEnv)
	if dir == "" {
		return configured
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return configured
	}
	return p
}
