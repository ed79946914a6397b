package lab

import "syscall"

// RestartAgent is systemd's "restart" for host i: it stops the agent with
// SIGTERM (which leaves the data plane as it is) and starts it again with
// the same arguments, on whatever binary its path now holds (a package
// manager may have replaced it).
func (l *Lab) RestartAgent(i int) error {
	if err := l.StopAgent(i, syscall.SIGTERM); err != nil {
		return err
	}
	return l.StartAgent(i)
}
