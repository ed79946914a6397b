package main

import "testing"

func TestQuotaSetAndShow(t *testing.T) {
	c := newCLI(t)
	c.steps([]step{
		{args: "quota set p", err: "give at least one limit"},
		{args: "quota set p --ports 2 --networks 1"},
		{args: "quota set p --vcpus -1"},
		{args: "quota set p --routers -2", field: "spec.routers"},
		{args: "networks create -p p n1"},
		{args: "networks create -p p n2", field: "quota.networks"},
		{args: "ports create -p p a --network n1"},
		{args: "quota show p", want: []string{"RESOURCE", "USED", "LIMIT", "networks", "1", "1", "ports", "1", "2", "routers", "0", "20", "vcpus", "0", "none"}},
	})
}
