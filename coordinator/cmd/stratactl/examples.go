package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// examples are the help's Example sections, by command path below
// stratactl. Each line is a command TestHelpExamplesParse runs through
// the real command tree (flags and argument counts), so they stay true.
var examples = map[string]string{
	"apply": `stratactl apply -f demo.yaml
stratactl apply -f demo.yaml --dry-run        # what would change; nothing is changed
stratactl apply -f demo.yaml --wait           # until every live host has applied it
stratactl apply -f - < net.yaml`,
	"delete": `stratactl delete -f demo.yaml --wait`,
	"status": `stratactl status                    # epoch, hosts, convergence, failing resources
stratactl status -o json`,
	"hosts drain":  `stratactl hosts drain compute-07 --reason "disk swap"`,
	"hosts enable": `stratactl hosts enable compute-07`,
	"hosts show":   `stratactl hosts show compute-07`,
	"tokens create": `stratactl tokens create --name ops --role admin
stratactl tokens create --name compute-07 --role agent --host compute-07`,
	"config set-context": `stratactl config set-context prod --endpoint https://10.0.0.5:7070 --token-file ~/.strata/prod.token --project demo`,
	"quota set":          `stratactl quota set demo --ports 50 --vcpus -1   # -1: no limit`,
	"projects create":    `stratactl projects create demo --description "the demo tenant"`,
	"networks create": `stratactl networks create -p demo app
stratactl networks create -p demo tun --type gre --mtu 1400 --wait`,
	"subnets create": `stratactl subnets create -p demo app-v4 --network app --cidr 10.1.0.0/24 --pool 10.1.0.10-10.1.0.200
stratactl subnets create -p demo app-v6 --network app --cidr fd00:1::/64 --no-dhcp`,
	"ports create": `stratactl ports create -p demo web --network app --ip app-v4=10.1.0.15 --security-group web
stratactl ports create -p demo any --network app --no-port-security`,
	"securitygroups create":   `stratactl securitygroups create -p demo web`,
	"securitygroups add-rule": `stratactl securitygroups add-rule -p demo web --rule direction=ingress,protocol=tcp,ports=80,remote_cidr=0.0.0.0/0`,
	"externalnetworks create": `stratactl externalnetworks create public --physical-network physnet1 --cidr 198.51.100.0/24 --gateway 198.51.100.1 --pool 198.51.100.10-198.51.100.99`,
	"routers create":          `stratactl routers create -p demo r1 --external-network public --subnet app-v4`,
	"routers add-interface":   `stratactl routers add-interface -p demo r1 db-v4`,
	"routers set-gateway":     `stratactl routers set-gateway -p demo r1 public`,
	"floatingips create":      `stratactl floatingips create -p demo web-fip --external-network public --port web`,
	"floatingips associate":   `stratactl floatingips associate -p demo web-fip web2`,
	"firewallgroups create":   `stratactl firewallgroups create -p demo edge --router r1 --ingress-rule protocol=tcp,destination_ports=22,action=deny --ingress-rule action=allow`,
	"flavors create": `stratactl flavors create small --vcpus 1 --ram 512 --disk 1
stratactl flavors create small-ssd --vcpus 1 --ram 512 --extra-spec disk=ssd`,
	"images create": `stratactl images create tiny --format raw --path /var/lib/strata/images/tiny.raw`,
	"images import": `stratactl images import tiny disk.qcow2   # into the images pool, with a progress line`,
	"instances create": `stratactl instances create -p demo vm1 --flavor small --image tiny --network app --wait
stratactl instances create -p demo vm2 --flavor small --boot-volume root --volume data
stratactl instances create -p demo web1 --flavor small --image tiny --network app --group web --zone az1`,
	"instances migrate":       `stratactl instances migrate -p demo vm1 --wait`,
	"instances resize":        `stratactl instances resize -p demo vm1 large`,
	"instances attach-volume": `stratactl instances attach-volume -p demo vm1 data   # hot-plugged into the running guest`,
	"instances show":          `stratactl instances show -p demo vm1   # state, host, addresses, console tail`,
	"volumetypes create":      `stratactl volumetypes create default --pool volumes`,
	"volumes create": `stratactl volumes create -p demo data --size 10
stratactl volumes create -p demo root --size 2 --image tiny      # a copy-on-write clone
stratactl volumes create -p demo copy --size 10 --snapshot data-1`,
	"volumes extend":         `stratactl volumes extend -p demo data --size 20   # online: a running guest sees the new size`,
	"volumesnapshots create": `stratactl volumesnapshots create -p demo data-1 --volume data`,
	"aggregates create":      `stratactl aggregates create fast --host compute-07 --host compute-08 --meta disk=ssd`,
	"aggregates set":         `stratactl aggregates set fast disk=nvme`,
	"servergroups create":    `stratactl servergroups create -p demo web --policy anti-affinity`,
}

// addExamples sets each command's Example from examples, indented as
// cobra's help expects.
func addExamples(root *cobra.Command) {
	for path, ex := range examples {
		cmd, _, err := root.Find(strings.Fields(path))
		if err != nil || cmd.CommandPath() != "stratactl "+path {
			panic("examples: no command " + path)
		}
		cmd.Example = "  " + strings.ReplaceAll(ex, "\n", "\n  ")
	}
}
