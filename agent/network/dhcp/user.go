package dhcp

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// dnsmasq faces tenant traffic, so it never keeps root: it starts as root
// (it opens its sockets, lease, log and pid files first) and then drops to
// an unprivileged user, keeping only CAP_NET_ADMIN. On SIGHUP it rereads
// its hosts, addn-hosts and opts files as that user, so those files are
// root-owned and readable by the user's group, in directories its group
// may enter (0750) under a state directory it may only traverse (0710);
// leases, log and pid files stay root's.

// DefaultUser is the system user dnsmasq runs as: the packages make it
// (sysusers.d, or useradd in their scripts).
const DefaultUser = "strata-dnsmasq"

// fallbackUsers are tried, in order, when the configured user does not
// exist (a lab, a test, a host without the package's user): Debian's own
// user for dnsmasq, then nobody. Never root.
var fallbackUsers = []string{"dnsmasq", "nobody"}

// runAs is the user and group dnsmasq drops to.
type runAs struct {
	user, group string
	uid, gid    int
}

// lookupRunAs resolves the first existing user of want and the fallbacks,
// and its primary group.
func lookupRunAs(want string) (runAs, error) {
	var tried []string
	for _, name := range append([]string{want}, fallbackUsers...) {
		if name == "" {
			continue
		}
		tried = append(tried, name)
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 != nil || err2 != nil || uid == 0 || gid == 0 {
			continue // never root, whatever the user database says
		}
		g, err := user.LookupGroupId(u.Gid)
		if err != nil {
			return runAs{}, fmt.Errorf("dhcp: group %s of user %q: %w", u.Gid, name, err)
		}
		return runAs{user: name, group: g.Name, uid: uid, gid: gid}, nil
	}
	return runAs{}, fmt.Errorf("dhcp: none of the users %q exists to run dnsmasq as (never root)", tried)
}

// shareDir makes dir (made if missing) root's, entered by the group with
// mode (0710: traverse; 0750: read its entries too).
func (r runAs) shareDir(dir string, mode os.FileMode) error {
	// Parents made here are only traversable (0711), as the agent's state
	// directory is: dnsmasq must pass them, never list them.
	if err := os.MkdirAll(filepath.Dir(dir), 0o711); err != nil {
		return fmt.Errorf("create %q: %w", filepath.Dir(dir), err)
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return fmt.Errorf("create %q: %w", dir, err)
	}
	if err := os.Chown(dir, 0, r.gid); err != nil {
		return fmt.Errorf("chown %q: %w", dir, err)
	}
	// Chmod too: MkdirAll's mode goes through the umask (the unit's 0077).
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("chmod %q: %w", dir, err)
	}
	return nil
}

// shareFile makes f root's and readable by the group (0640).
func (r runAs) shareFile(f *os.File) error {
	if err := f.Chown(0, r.gid); err != nil {
		return fmt.Errorf("chown %q: %w", f.Name(), err)
	}
	return f.Chmod(0o640)
}

// checkReach says which directory above dir (dir included) the user
// cannot enter: dnsmasq would start (it opens the files as root) and then
// fail to reread them on SIGHUP, serving stale hosts forever.
func (r runAs) checkReach(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for d := abs; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("dhcp: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return errors.New("dhcp: no file owner information")
		}
		m := fi.Mode().Perm()
		enter := m&0o001 != 0 || (int(st.Gid) == r.gid && m&0o010 != 0) || (int(st.Uid) == r.uid && m&0o100 != 0)
		if !enter {
			return fmt.Errorf("dhcp: dnsmasq runs as %s:%s, who cannot enter %q (mode %04o, owner %d:%d), so it could not reread its files under %q on SIGHUP; "+
				"make the directory traversable (chmod o+x, or group %s with g+x)", r.user, r.group, d, m, st.Uid, st.Gid, dir, r.group)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}
