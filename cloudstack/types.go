package cloudstack

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// The CloudStack objects vpcflow reads, with only the response fields it
// uses (CloudStack API reference: listHosts, listVPCs, listNetworks,
// listVirtualMachines, listRouters; all JSON keys are lowercase).

// Host is one hypervisor (listHosts type=Routing).
type Host struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	State      string `json:"state"` // Up, Disconnected, Alert, Down, ...
	Hypervisor string `json:"hypervisor"`
	IPAddress  string `json:"ipaddress"`
}

// VPC is one CloudStack VPC.
type VPC struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	CIDR    string `json:"cidr"`
	State   string `json:"state"`
	Account string `json:"account"`
	// DistributedVPCRouter: the VPC offering routes between tiers on the
	// hosts (mapped to routing: distributed).
	DistributedVPCRouter bool `json:"distributedvpcrouter"`
}

// Network is one guest network; a VPC tier has VPCID set.
type Network struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	VPCID        string `json:"vpcid"`
	CIDR         string `json:"cidr"`
	Gateway      string `json:"gateway"`
	IP6CIDR      string `json:"ip6cidr"`
	BroadcastURI string `json:"broadcasturi"` // vxlan://5001, vlan://100
	TrafficType  string `json:"traffictype"`
	Type         string `json:"type"`
	State        string `json:"state"`
	// ACLID is the network ACL list of a VPC tier (empty: none).
	ACLID string `json:"aclid"`
}

// NIC is one NIC of a VM or router.
type NIC struct {
	ID          string   `json:"id"`
	NetworkID   string   `json:"networkid"`
	NetworkName string   `json:"networkname"`
	MACAddress  string   `json:"macaddress"`
	IPAddress   string   `json:"ipaddress"`
	IP6Address  string   `json:"ip6address"`
	IsDefault   bool     `json:"isdefault"`
	DeviceID    *flexNum `json:"deviceid"` // nil when not reported (listVirtualMachines often omits it)
	TrafficType string   `json:"traffictype"`
}

// VM is one virtual machine (listVirtualMachines) or virtual router
// (listRouters, Router set).
type VM struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	DisplayName  string `json:"displayname"`
	InstanceName string `json:"instancename"`
	State        string `json:"state"` // Running, Migrating, Stopped, ...
	HostID       string `json:"hostid"`
	HostName     string `json:"hostname"`
	NICs         []NIC  `json:"nic"`
	// Router is true for objects of listRouters (the VPC's virtual router).
	Router bool `json:"-"`
	// Redundant VPC routers come in pairs; RedundantState is PRIMARY
	// (MASTER before 4.16), BACKUP, FAULT or UNKNOWN.
	IsRedundantRouter bool   `json:"isredundantrouter"`
	RedundantState    string `json:"redundantstate"`
	// SecurityGroups are the VM's security groups (details=secgrp).
	SecurityGroups []SGRef `json:"securitygroup"`
}

// Label names the NIC in messages: "nic N" by its deviceid, or "nic
// <nic id>" when CloudStack did not report one.
func (n *NIC) Label() string {
	if n.DeviceID != nil {
		return fmt.Sprintf("nic %d", *n.DeviceID)
	}
	return "nic " + n.ID
}

// Device is the deviceid, or -1 when CloudStack did not report one.
func (n *NIC) Device() int {
	if n.DeviceID == nil {
		return -1
	}
	return int(*n.DeviceID)
}

// flexNum is a number CloudStack sends as a JSON number or a string.
type flexNum int

func (n *flexNum) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*n = 0
		return nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("want a number, got %s", b)
	}
	*n = flexNum(v)
	return nil
}

// Objects is everything one fetch read from CloudStack.
type Objects struct {
	Hosts    []Host
	VPCs     []VPC
	Networks []Network
	VMs      []VM // guests, then routers

	// Policy (policy_fetch.go): network ACL lists and their items, and
	// security groups with their rules.
	ACLLists       []ACLList
	ACLItems       []ACLItem
	SecurityGroups []SecurityGroup
}

// listAll lists the accounts' objects (listall=true) and then every
// project's (projectid=-1): CloudStack leaves project-owned objects out of
// listall=true. An object in both answers is kept once.
func listAll[T any](ctx context.Context, c *Client, command, item string, params map[string]string, idOf func(*T) string) ([]T, error) {
	out, err := list(ctx, c, command, item, params, idOf)
	if err != nil {
		return nil, err
	}
	p := map[string]string{"projectid": "-1"}
	for k, v := range params {
		p[k] = v
	}
	proj, err := list(ctx, c, command, item, p, idOf)
	if err != nil {
		return nil, fmt.Errorf("%w (listing every project's objects, projectid=-1)", err)
	}
	seen := make(map[string]bool, len(out))
	for i := range out {
		seen[idOf(&out[i])] = true
	}
	for i := range proj {
		if !seen[idOf(&proj[i])] {
			out = append(out, proj[i])
		}
	}
	return out, nil
}

// Fetch reads hosts, VPCs, networks, VMs and routers, then the network ACL
// lists, their items and the security groups, every page of each.
// Any error (HTTP, CloudStack error, partial list, timeout) fails the whole
// fetch: a partial view of the cloud is never returned.
func (c *Client) Fetch(ctx context.Context) (*Objects, error) {
	var o Objects
	var err error
	if o.Hosts, err = list(ctx, c, "listHosts", "host", map[string]string{"type": "Routing"}, func(h *Host) string { return h.ID }); err != nil {
		return nil, err
	}
	all := map[string]string{"listall": "true"}
	if o.VPCs, err = listAll(ctx, c, "listVPCs", "vpc", all, func(v *VPC) string { return v.ID }); err != nil {
		return nil, err
	}
	if o.Networks, err = listAll(ctx, c, "listNetworks", "network", all, func(n *Network) string { return n.ID }); err != nil {
		return nil, err
	}
	vms, err := listAll(ctx, c, "listVirtualMachines", "virtualmachine", map[string]string{"listall": "true", "details": "nics,secgrp"}, func(v *VM) string { return v.ID })
	if err != nil {
		return nil, err
	}
	routers, err := listAll(ctx, c, "listRouters", "router", all, func(v *VM) string { return v.ID })
	if err != nil {
		return nil, err
	}
	for i := range routers {
		routers[i].Router = true
	}
	o.VMs = append(vms, routers...)
	if err := c.fetchPolicy(ctx, &o); err != nil {
		return nil, err
	}
	return &o, nil
}
