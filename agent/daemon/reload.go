package daemon

// Resync runs a full level-triggered pass now on the plan the agent holds,
// as SIGHUP (systemctl reload) asks: every reconciler compares the host with
// the plan and converges. Nothing is torn down first, so traffic keeps
// flowing; settings that need a new process (gossip, addresses) take a
// restart, which is just as safe for the data plane.
func (a *Agent) Resync() { a.runner.Update(a.watcher.Snapshot()) }
