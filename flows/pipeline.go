package flows

import (
	"fmt"
	"slices"
)

// TableID is an OpenFlow table number. Raw table numbers appear only in this
// file: everything else uses the named constants.
type TableID uint8

// The pipeline (DESIGN §3). IDs are fixed (like Faucet's FAUCET_PIPELINE), so
// dumps, golden files and audits stay comparable across versions; gaps leave
// room for later stages.
const (
	TClassify     TableID = 0  // entry: by in_port
	TUnderlayIn   TableID = 10 // from the uplink
	THostOut      TableID = 20 // from LOCAL (host stack, encapsulated tunnel traffic)
	TVMEgress     TableID = 30 // from a VM port: port security
	TPolOut       TableID = 32 // policy: a policy VM's IPv4 into conntrack (its tier's zone)
	TPolState     TableID = 33 // policy: conntrack state; the original direction into registers
	TSGOut        TableID = 34 // policy: the source VM's security groups (egress)
	TACLOut       TableID = 35 // policy: the source tier's ACL (egress)
	TACLIn        TableID = 36 // policy: the destination tier's ACL (ingress)
	TSGIn         TableID = 37 // policy: the destination VM's security groups (ingress)
	TPolCommit    TableID = 39 // policy: commit a new connection, then on
	TMgmtGuard    TableID = 40 // guest IP traffic: management separation
	TARPResponder TableID = 50 // guest ARP
	TNDResponder  TableID = 52 // guest IPv6 neighbour discovery (dual-stack hosts only)
	TNDAnswer     TableID = 54 // the ND responder's advertisement: target link-layer address, back to the asker
	TTunnelIn     TableID = 60 // from the tunnel port: key + source allowlist
	TRoute        TableID = 65 // distributed routing between a VPC's tiers
	TL2Forward    TableID = 70 // per-tier L2 delivery
	TPolIn        TableID = 75 // policy: IPv4 to a local policy VM into conntrack (its tier's zone)
)

// PolicyTables are the tables only a host with a policy port carries
// (policy_compile.go): a policy-free host's flows are unchanged by them.
var PolicyTables = []TableID{TPolOut, TPolState, TSGOut, TACLOut, TACLIn, TSGIn, TPolCommit, TPolIn}

// IsPolicyTable reports whether id is one of PolicyTables.
func IsPolicyTable(id TableID) bool {
	for _, t := range PolicyTables {
		if t == id {
			return true
		}
	}
	return false
}

// Table is one stage of the pipeline with its contract: the fields its flows
// may match, the tables they may go to, and its miss behaviour (always a
// priority-0 drop flow without match, counted).
type Table struct {
	ID      TableID
	Name    string
	Purpose string
	Miss    string
	Fields  []Field
	Next    []TableID
	// Recirc are the tables a ct action of this table may recirculate to
	// (ct(table=N) is not a goto: it may go back, as the ingress point's
	// conntrack goes back to the policy checks).
	Recirc []TableID
}

// Pipeline is every table, in order. To add a stage: pick an unused ID between
// its neighbours, declare it here with its contract, write one builder
// function per flow family in compile.go, and document it in docs/pipeline.md.
var Pipeline = []Table{
	{ID: TClassify, Name: "classify",
		Purpose: "classify by ingress port: uplink, LOCAL, tunnel, known VM port; anything else is dropped",
		Miss:    "drop (unknown port)",
		Fields:  []Field{FInPort},
		Next:    []TableID{TUnderlayIn, THostOut, TVMEgress, TTunnelIn}},
	{ID: TUnderlayIn, Name: "underlay_in",
		Purpose: "uplink traffic goes to the host stack only; tunnel packets only from trusted peers; peer ARP guarded; a VLAN tier's tagged frames to its local ports",
		Miss:    "drop",
		Fields:  []Field{FEthSrc, FEthType, FVLANVID, FIPProto, FIPv4Src, FIPv4Dst, FUDPDst, FARPSpa},
		Next:    []TableID{TL2Forward}},
	{ID: THostOut, Name: "host_out",
		Purpose: "the host's own and encapsulated traffic leaves by the uplink, never into a VM port",
		Miss:    "drop"},
	{ID: TVMEgress, Name: "vm_egress",
		Purpose: "port security: a VM sends only with its own MAC and IP (ARP sha/spa too); DHCP discover allowed; IPv6 and DHCP server replies dropped",
		Miss:    "drop",
		Fields:  []Field{FInPort, FEthSrc, FEthType, FIPProto, FIPv4Src, FIPv4Dst, FUDPSrc, FUDPDst, FARPSpa, FARPSha, FIPv6Src, FICMPv6Type, FNDTarget, FNDSll, FNDTll},
		Next:    []TableID{TPolOut, TMgmtGuard, TARPResponder, TNDResponder, TL2Forward}},
	{ID: TPolOut, Name: "policy_out",
		Purpose: "IPv4 a policy VM sends (it has security groups or its tier an ACL): VPC id and judging point into registers, then conntrack in the tier's zone",
		Miss:    "drop",
		Fields:  []Field{FEthType, RegTier, RegOrigin},
		Recirc:  []TableID{TPolState}},
	{ID: TPolState, Name: "policy_state",
		Purpose: "conntrack invalid: dropped; related: passes; otherwise the connection's original direction (addresses, destination port or ICMP type/code) into registers, the reply direction swapped back, and on to the checks",
		Miss:    "drop",
		Fields:  []Field{FEthType, FIPProto, FICMPType, FCtState},
		Next:    []TableID{TSGOut, TPolCommit}},
	{ID: TSGOut, Name: "sg_egress",
		Purpose: "the source VM's security groups, egress: with egress rules, only what they allow; without, everything",
		Miss:    "drop",
		Fields:  []Field{FEthType, FIPProto, RegPolVPC, RegPolSrc, RegPolDst, RegPolL4, FConjID},
		Next:    []TableID{TACLOut}},
	{ID: TACLOut, Name: "acl_egress",
		Purpose: "the source tier's network ACL, egress: first matching rule by number; inside the tier, to or from the router: not judged; no match: allowed",
		Miss:    "drop",
		Fields:  []Field{FEthType, FIPProto, RegPolVPC, RegPolSrc, RegPolDst, RegPolL4, FConjID},
		Next:    []TableID{TACLIn}},
	{ID: TACLIn, Name: "acl_ingress",
		Purpose: "the destination tier's network ACL, ingress: first matching rule by number; inside the tier, to or from the router: not judged; no match: denied",
		Miss:    "drop",
		Fields:  []Field{FEthType, FIPProto, RegPolVPC, RegPolSrc, RegPolDst, RegPolL4, FConjID},
		Next:    []TableID{TSGIn}},
	{ID: TSGIn, Name: "sg_ingress",
		Purpose: "the destination VM's security groups, ingress: only what they allow",
		Miss:    "drop",
		Fields:  []Field{FEthType, FIPProto, RegPolVPC, RegPolSrc, RegPolDst, RegPolL4, FConjID},
		Next:    []TableID{TPolCommit}},
	{ID: TPolCommit, Name: "policy_commit",
		Purpose: "a new connection allowed by every check is committed in the zone; then on: from a VM to management separation, to a VM to its port",
		Miss:    "drop",
		Fields:  []Field{FEthType, FEthDst, FCtState, RegTier, RegPolPoint},
		Next:    []TableID{TMgmtGuard}},
	{ID: TMgmtGuard, Name: "mgmt_guard",
		Purpose: "guests never reach management CIDRs, host tunnel IPs or host service ports (except VM-to-VM inside the tier, or between tiers of a distributed-routing VPC)",
		Miss:    "drop",
		Fields:  []Field{FEthDst, FEthType, FIPProto, FIPv4Dst, FTCPDst, FUDPDst, RegTier},
		Next:    []TableID{TRoute, TL2Forward}},
	{ID: TARPResponder, Name: "arp_responder",
		Purpose: "ARP requests for known tier IPs (and a distributed-routing gateway) answered in the switch (never for the asker's own IP); other requests dropped (overlay) or flooded on the VLAN (VLAN tiers); replies forwarded",
		Miss:    "drop (ARP request for an unknown address)",
		Fields:  []Field{FInPort, FEthType, FARPOp, FARPTpa, RegTier},
		Next:    []TableID{TL2Forward}},
	{ID: TNDResponder, Name: "nd_responder",
		Purpose: "IPv6 neighbour solicitations for known tier addresses answered in the switch (never for the asker's own address, never without a source link-layer address: DAD); other ND forwarded within the tier",
		Miss:    "drop",
		Fields:  []Field{FInPort, FEthType, FIPProto, FICMPv6Type, FNDTarget, FNDSll, RegTier},
		Next:    []TableID{TNDAnswer, TL2Forward}},
	{ID: TNDAnswer, Name: "nd_answer",
		Purpose: "the ND responder's advertisement (already an NA: Open vSwitch lets nd_tll be written only on a packet matched as one): the target link-layer address from the new source MAC, back out of the asker's port",
		Miss:    "drop",
		Fields:  []Field{FEthType, FIPProto, FICMPv6Type}},
	{ID: TTunnelIn, Name: "tunnel_in",
		Purpose: "decapsulated packets: accept a tunnel key only from a host carrying that tier (or a trusted peer); mark the tier",
		Miss:    "drop (unknown key or untrusted source)",
		Fields:  []Field{FTunID, FTunSrc, FConjID},
		Next:    []TableID{TL2Forward}},
	{ID: TRoute, Name: "route",
		Purpose: "distributed routing: a VPC's guest address to its VM: gateway source MAC, the VM's MAC, TTL decrement, delivered to its port or host",
		Miss:    "drop (no VM has the address)",
		Fields:  []Field{FEthType, FIPv4Dst, RegVPC},
		Next:    []TableID{TPolIn}},
	{ID: TL2Forward, Name: "l2_forward",
		Purpose: "per-tier L2: known MAC to its port or tunnel, broadcast to the tier (split horizon), unknown unicast dropped (overlay) or sent tagged to the uplink (VLAN tiers, from a VM only)",
		Miss:    "drop (unknown unicast)",
		Fields:  []Field{FEthDst, FEthType, FIPProto, FUDPSrc, FUDPDst, RegTier, RegOrigin},
		Next:    []TableID{TPolIn}},
	{ID: TPolIn, Name: "policy_in",
		Purpose: "IPv4 to a local policy VM: VPC id and judging point into registers, then conntrack in the destination tier's zone (back to policy_state)",
		Miss:    "drop",
		Fields:  []Field{FEthType, RegTier},
		Recirc:  []TableID{TPolState}},
}

// TableByID returns the table declaration.
func TableByID(id TableID) (*Table, bool) {
	for i := range Pipeline {
		if Pipeline[i].ID == id {
			return &Pipeline[i], true
		}
	}
	return nil, false
}

// TableName returns the table's name, or "table-N" for an unknown id.
func TableName(id TableID) string {
	if t, ok := TableByID(id); ok {
		return t.Name
	}
	return fmt.Sprintf("table-%d", id)
}

// CheckContract verifies a flow against its table's contract (STYLE 2).
func CheckContract(f *Flow) error {
	t, ok := TableByID(f.Table)
	if !ok {
		return fmt.Errorf("flow %s: table %d is not in the pipeline", f, f.Table)
	}
	if f.Priority == 0 {
		if len(f.Match) != 0 || len(f.Actions) != 0 || f.Goto != NoGoto {
			return fmt.Errorf("flow %s: priority 0 is reserved for the table's match-all drop", f)
		}
		return nil
	}
	for _, m := range f.Match {
		allowed := false
		for _, a := range t.Fields {
			if a == m.Field {
				allowed = true
				break
			}
		}
		if !allowed {
			return fmt.Errorf("flow %s: table %s may not match %s", f, t.Name, m.Field)
		}
	}
	for _, a := range f.Actions {
		if c, ok := a.(CT); ok && c.Table != NoGoto && !slices.Contains(t.Recirc, c.Table) {
			return fmt.Errorf("flow %s: table %s may not recirculate to table %s", f, t.Name, TableName(c.Table))
		}
	}
	if f.Goto != NoGoto {
		allowed := false
		for _, n := range t.Next {
			if n == f.Goto {
				allowed = true
			}
		}
		if !allowed || f.Goto <= f.Table {
			return fmt.Errorf("flow %s: table %s may not go to table %s", f, t.Name, TableName(f.Goto))
		}
	}
	return nil
}
