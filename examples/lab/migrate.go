package lab

import (
	"context"
	"fmt"
	"strconv"
)

// migrateIface is the destination NIC's name inside the VM namespace until
// the switchover renames it to VMIface.
const migrateIface = "eth0-dst"

// PrepareMigration creates a VM's NIC on the destination host the way the
// target qemu of a live migration does before the switchover: a new port
// on toHost's cloudbr0 (a veth whose host end is port), its VM end down in
// the VM's namespace with the VM's MAC. The VM keeps using its NIC on the
// source host until CompleteMigration.
func (l *Lab) PrepareMigration(ctx context.Context, vm, toHost, port string) error {
	v, err := l.vm(vm)
	if err != nil {
		return err
	}
	if _, err := l.host(toHost); err != nil {
		return err
	}
	hns, mtu := l.HostNS(toHost), strconv.Itoa(VMMTU)
	if err := l.ip(ctx, "", "link", "add", port, "netns", hns, "mtu", mtu, "type", "veth", "peer", "name", migrateIface, "netns", v.ns, "mtu", mtu); err != nil {
		return err
	}
	if err := l.ip(ctx, v.ns, "link", "set", migrateIface, "address", v.mac); err != nil {
		return err
	}
	for _, end := range []struct{ ns, dev string }{{v.ns, migrateIface}, {hns, port}} {
		if _, err := l.Exec(ctx, end.ns, ethtoolBin(), "-K", end.dev, "tx", "off"); err != nil {
			return err
		}
	}
	if err := l.ip(ctx, hns, "link", "set", port, "up"); err != nil {
		return err
	}
	_, err = l.OVS(ctx, toHost, "ovs-vsctl", "add-port", Bridge, port)
	return err
}

// CompleteMigration is the switchover of a live migration prepared with
// PrepareMigration: the NIC on the source host goes away (libvirt deletes
// the tap and its port), and the destination NIC becomes the VM's VMIface
// with its address, up. Afterwards the lab knows the VM on toHost/port.
func (l *Lab) CompleteMigration(ctx context.Context, vm, toHost, port string) error {
	v, err := l.vm(vm)
	if err != nil {
		return err
	}
	old := v.vm.Port
	if err := l.ip(ctx, v.ns, "link", "del", VMIface); err != nil {
		return err
	}
	if _, err := l.OVS(ctx, v.host, "ovs-vsctl", "--if-exists", "del-port", Bridge, old); err != nil {
		return err
	}
	if err := l.ip(ctx, v.ns, "link", "set", migrateIface, "name", VMIface); err != nil {
		return err
	}
	if err := l.ip(ctx, v.ns, "addr", "add", fmt.Sprintf("%s/%d", v.addr, v.bits), "dev", VMIface); err != nil {
		return err
	}
	if err := l.ip(ctx, v.ns, "link", "set", VMIface, "up"); err != nil {
		return err
	}
	nv := *v.vm
	nv.Host, nv.Port = toHost, port
	v.vm, v.host = &nv, toHost
	return nil
}
