package store

import (
	"path/filepath"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
)

// TestFenceReportedWakesOnFenceStatus: a report carrying a fence's status
// closes FenceReported's channel (the recovery controller moves the
// fenced host's instances at once); a report without one does not.
func TestFenceReportedWakesOnFenceStatus(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "s.db"), 100)
	defer s.Close()
	fence := api.Resource{Kind: "fence", Name: "h2-1", Spec: []byte(`{"host":"h2"}`)}
	put(t, s, fence)
	put(t, s, project("p", ""))
	keep := func(api.Resource) bool { return true }

	ch := s.FenceReported()
	if _, err := s.PutReport(api.HostReport{Host: "h1", Resources: []api.ResourceReport{
		{Key: project("p", "").Key(), ResourceStatus: api.ResourceStatus{State: "ok"}}}}, keep); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Fatal("a report without a fence's status woke FenceReported")
	default:
	}
	if _, err := s.PutReport(api.HostReport{Host: "h1", Resources: []api.ResourceReport{
		{Key: fence.Key(), ResourceStatus: api.ResourceStatus{State: api.FenceFenced}}}}, keep); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("a report of a fence's status did not wake FenceReported")
	}
	if next := s.FenceReported(); next == ch {
		t.Fatal("FenceReported returned the closed channel again")
	}
}
