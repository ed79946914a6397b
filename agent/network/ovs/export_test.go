package ovs

import "context"

// CountFlows asks the bridge over OpenFlow, as the driver does, how many
// flows it has in all and of the current generation in table (255: all).
func (d *Driver) CountFlows(ctx context.Context, table uint8) (all, current int, err error) {
	n, err := d.of.CountFlows(ctx, allFlows, genFlows(table, d.Generation()))
	if err != nil {
		return 0, 0, err
	}
	return n[0], n[1], nil
}
