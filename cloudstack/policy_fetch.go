package cloudstack

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// The policy objects vpcflow reads: network ACL lists (listNetworkACLLists,
// NetworkACLResponse), their items (listNetworkACLs,
// NetworkACLItemResponse) and security groups (listSecurityGroups,
// SecurityGroupResponse with SecurityGroupRuleResponse rules), with only
// the response fields the mapping uses (policy_map.go, docs/cloudstack.md
// "Network ACLs and security groups").

// ACLList is one network ACL list. The built-in lists default_allow and
// default_deny, and the global lists a root admin creates, belong to no
// VPC (CloudStack's vpc id 0): the answer has no vpcid for them.
type ACLList struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	VPCID       string `json:"vpcid"`
}

// ACLItem is one rule of a list. CloudStack sends startport and endport
// as strings, icmptype, icmpcode and number as numbers; optInt reads both.
type ACLItem struct {
	ID          string `json:"id"`
	ACLID       string `json:"aclid"`
	Number      optInt `json:"number"`
	Action      string `json:"action"`      // Allow, Deny
	TrafficType string `json:"traffictype"` // Ingress, Egress
	Protocol    string `json:"protocol"`    // tcp, udp, icmp, all, or an IP protocol number
	StartPort   optInt `json:"startport"`
	EndPort     optInt `json:"endport"`
	ICMPType    optInt `json:"icmptype"` // -1: any
	ICMPCode    optInt `json:"icmpcode"` // -1: any
	CIDRList    string `json:"cidrlist"` // comma-separated; empty: any
	State       string `json:"state"`    // Active, Add, Deleting
}

// SecurityGroup is one security group with its rules.
type SecurityGroup struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	Account   string   `json:"account"`
	DomainID  string   `json:"domainid"`
	ProjectID string   `json:"projectid"`
	Ingress   []SGRule `json:"ingressrule"`
	Egress    []SGRule `json:"egressrule"`
}

// SGRule is one allow rule of a security group. Its remote side is one
// cidr, or another group (securitygroupname of account, in the owner's
// domain).
type SGRule struct {
	RuleID            string `json:"ruleid"`
	Protocol          string `json:"protocol"`
	StartPort         optInt `json:"startport"`
	EndPort           optInt `json:"endport"`
	ICMPType          optInt `json:"icmptype"`
	ICMPCode          optInt `json:"icmpcode"`
	CIDR              string `json:"cidr"`
	SecurityGroupName string `json:"securitygroupname"`
	Account           string `json:"account"`
}

// SGRef is a VM's security group (listVirtualMachines securitygroup[]).
type SGRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// optInt is an optional number that CloudStack sends as a JSON number or
// as a string ("80"); absent, null and "" leave it unset.
type optInt struct {
	set bool
	v   int
}

func some(v int) optInt { return optInt{set: true, v: v} }

func (n *optInt) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "null" {
		*n = optInt{}
		return nil
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	if s == "" {
		*n = optInt{}
		return nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("want a number, got %s", b)
	}
	*n = some(v)
	return nil
}

func (n optInt) String() string {
	if !n.set {
		return "-"
	}
	return strconv.Itoa(n.v)
}

// fetchPolicy reads every network ACL list, every item and every security
// group, one list call each (listall=true, then projectid=-1, as the other
// objects): without aclid or vpcid, listNetworkACLs and
// listNetworkACLLists answer for every VPC the key may see plus vpc id 0
// (the built-in and global lists), and each item names its list (aclid).
// A constant number of requests per fetch, whatever the number of lists.
func (c *Client) fetchPolicy(ctx context.Context, o *Objects) error {
	all := map[string]string{"listall": "true"}
	var err error
	if o.ACLLists, err = listAll(ctx, c, "listNetworkACLLists", "networkacllist", all, func(l *ACLList) string { return l.ID }); err != nil {
		return err
	}
	if o.ACLItems, err = listAll(ctx, c, "listNetworkACLs", "networkacl", all, func(it *ACLItem) string { return it.ID }); err != nil {
		return err
	}
	if o.SecurityGroups, err = listAll(ctx, c, "listSecurityGroups", "securitygroup", all, func(g *SecurityGroup) string { return g.ID }); err != nil {
		return err
	}
	return nil
}
