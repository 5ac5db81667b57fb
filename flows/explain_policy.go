package flows

// The policy part of `vpcflow explain` (docs/explain.md, "Policy"): the
// packet's connection state (--state), the model's verdict on it
// (PolicyModel.Judge) next to the verdict of the flows (the policy flow
// that decided, by the same rule names as audit and the drop log), and
// whether the two agree. Pure Go, no I/O.

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// ParseConnState reads an explain --state value.
func ParseConnState(s string) (ConnState, error) {
	switch s {
	case "", "new":
		return ConnNew, nil
	case "established":
		return ConnEstablished, nil
	case "reply":
		return ConnReply, nil
	case "invalid":
		return ConnInvalid, nil
	}
	return ConnNew, fmt.Errorf("--state %q: use new, established, reply or invalid (the packet's conntrack state)", s)
}

// CtNextFlags is the ofproto/trace --ct-next value of a connection state:
// the ct_state the evaluator assumes after a ct lookup (assumedState).
func CtNextFlags(s ConnState) string {
	st := assumedState(s)
	var f []string
	for _, x := range []struct {
		bit  uint32
		name string
	}{{CtTrk, "trk"}, {CtNew, "new"}, {CtEst, "est"}, {CtRel, "rel"}, {CtRpl, "rpl"}, {CtInv, "inv"}} {
		if st&x.bit != 0 {
			f = append(f, x.name)
		}
	}
	return strings.Join(f, ",")
}

// ExplainPolicyCheck is one check of the model's verdict, in path order.
type ExplainPolicyCheck struct {
	Where   string `json:"where"`
	Rule    string `json:"rule"`
	Allowed bool   `json:"allowed"`
}

// ExplainPolicy is the model's and the flows' policy verdict on the
// explained packet.
type ExplainPolicy struct {
	VPC   string `json:"vpc"`
	State string `json:"state"` // new, established, reply, invalid
	// Connection is the packet as the model judges it.
	Connection string `json:"connection"`
	// Model is the model's verdict line (PolicyModel.Judge), e.g. "denied
	// by acl blue/web-acl #20"; ModelRule the rule it names.
	Model        string               `json:"model"`
	ModelAllowed bool                 `json:"model_allowed"`
	ModelRule    string               `json:"model_rule,omitempty"`
	Checks       []ExplainPolicyCheck `json:"checks"`
	// Flows is the flows' verdict: "denied by RULE (host H, table T,
	// priority P, cookie C)", "allowed (judged on host H)" or "not judged:
	// WHY"; FlowsVerdict is allowed, denied or not-judged, FlowsRule the
	// rule of the deciding drop.
	Flows        string `json:"flows"`
	FlowsVerdict string `json:"flows_verdict"`
	FlowsRule    string `json:"flows_rule,omitempty"`
	// Agree is false when the flows and the model decide differently (or
	// name different rules for a denial); Diff says how.
	Agree bool     `json:"agree"`
	Diff  string   `json:"diff,omitempty"`
	Notes []string `json:"notes,omitempty"`
}

// Flows' policy verdicts.
const (
	PolicyFlowsAllowed   = "allowed"
	PolicyFlowsDenied    = "denied"
	PolicyFlowsNotJudged = "not-judged"
)

// policySubject records the packet explain judges: set by fromVM and
// fromUnderlay, read by judgePolicy.
type policySubject struct {
	vpc *VPC
	pkt Packet
}

// preparePolicy sets p's connection state and, for ICMP, its type (an
// echo request; with --state reply an echo reply), and remembers it as
// the packet judged in vpc.
func (e *Explanation) preparePolicy(p *Packet, vpc *VPC) {
	if p.EthType != EthIPv4 {
		return
	}
	p.Conn = e.state
	if p.IPProto == ProtoICMP {
		p.ICMPType, p.ICMPCode = 8, 0
		if e.state == ConnReply {
			p.ICMPType = 0
		}
	}
	e.subject = &policySubject{vpc: vpc, pkt: *p}
}

// involvesPolicy reports whether the packet meets a policy point: its
// source or destination (inside vpc) is a policy VM.
func involvesPolicy(vpc *VPC, src, dst netip.Addr) bool {
	for j := range vpc.Tiers {
		t := &vpc.Tiers[j]
		for k := range t.VMs {
			vm := &t.VMs[k]
			if (vm.Addr == src || vm.Addr == dst) && IsPolicyVM(t, vm) {
				return true
			}
		}
	}
	return false
}

// judgePolicy fills e.Policy: the model's verdict on the packet in its
// state, the flows' verdict from the hops, and whether they agree. It
// does nothing for a blueprint without policy, an ARP or non-IPv4 packet,
// or a packet of no VPC.
func (e *Explanation) judgePolicy() {
	bp := e.cloud.Blueprint
	s := e.subject
	if s == nil || s.vpc == nil || !bp.UsesPolicy() || !s.pkt.IPSrc.IsValid() || !s.pkt.IPDst.IsValid() {
		return
	}
	p := s.pkt
	c := Conn{Proto: p.IPProto, Src: p.IPSrc, Dst: p.IPDst}
	switch p.IPProto {
	case ProtoTCP, ProtoUDP:
		c.SrcPort, c.DstPort = p.L4Src, p.L4Dst
	case ProtoICMP:
		c.ICMPType, c.ICMPCode = 8, 0 // the connection's request (a reply is judged as the request it answers)
	}
	if !involvesPolicy(s.vpc, c.Src, c.Dst) && e.state == ConnNew {
		return // no policy point on the path and nothing asked: today's output
	}
	model := NewPolicyModel(bp)
	v := model.Judge(s.vpc, c, e.state)
	shown := c // the packet as sent (an ICMP reply is an echo reply)
	shown.ICMPType = p.ICMPType
	ep := &ExplainPolicy{VPC: s.vpc.Name, State: e.state.String(), Connection: shown.String(), Checks: []ExplainPolicyCheck{}}
	if e.state == ConnReply {
		// Judge reads "reply" as "would be a reply if the other way were
		// allowed" and otherwise judges the packet as opening its own
		// connection. --state reply asserts conntrack holds the connection
		// the other way: the flows then judge that connection (revoked:
		// dropped). The model's verdict on it is Judge of the original.
		orig := model.Judge(s.vpc, c.Reverse(), ConnNew)
		if !orig.Allowed {
			v = orig
			v.State = ConnReply
			ep.Notes = append(ep.Notes, fmt.Sprintf("the connection this reply answers (%s) is not allowed by the rules: a tracked one (opened before a rule changed) is cut, both ways; without it the packet opens a connection of its own: explain it with --state new", c.Reverse()))
		}
	}
	if !involvesPolicy(s.vpc, c.Src, c.Dst) {
		// Neither end is a policy VM: no conntrack point, the state does
		// not matter to the flows.
		v = model.Judge(s.vpc, c, ConnNew)
		ep.Notes = append(ep.Notes, "neither end is a policy VM (a VM with security groups or in a tier with an ACL): the packet meets no conntrack point, so its state does not matter")
	}
	ep.Model, ep.ModelAllowed, ep.ModelRule = v.String(), v.Allowed, v.Rule
	for _, ch := range v.Checks {
		ep.Checks = append(ep.Checks, ExplainPolicyCheck{Where: ch.Where, Rule: ch.Rule, Allowed: ch.Allowed})
	}
	e.flowsPolicy(ep)
	e.comparePolicy(ep)
	e.Policy = ep
}

// flowsPolicy reads the flows' verdict off the hops: the first policy
// flow that dropped the packet, else allowed when the packet went through
// a policy point, else not judged.
func (e *Explanation) flowsPolicy(ep *ExplainPolicy) {
	rules := NewPolicyRules(e.cloud.Blueprint)
	var judgedOn []string
	for i := range e.Hops {
		h := &e.Hops[i]
		for k := range h.trace.Steps {
			st := &h.trace.Steps[k]
			if isPolicyTable(st.Table) && !slices.Contains(judgedOn, h.Host) {
				judgedOn = append(judgedOn, h.Host)
			}
			last := k == len(h.trace.Steps)-1
			if !last || !h.Dropped || !isPolicyTable(st.Table) {
				continue
			}
			name := fmt.Sprintf("%s flow %s", st.Cookie.Category(), st.Cookie.Rule())
			if pr, ok := rules.Lookup(st.Cookie, st.Table); ok {
				name = pr.Name
			} else if st.Cookie.Category() == CatDefaultDrop {
				name = "table " + TableName(st.Table) + " miss"
			}
			ep.FlowsVerdict, ep.FlowsRule = PolicyFlowsDenied, name
			ep.Flows = fmt.Sprintf("denied by %s (host %s, table %s, priority %d, cookie %s)", name, h.Host, TableName(st.Table), st.Flow.Priority, st.Cookie)
			return
		}
	}
	switch {
	case len(judgedOn) > 0:
		ep.FlowsVerdict = PolicyFlowsAllowed
		on := "host " + judgedOn[0]
		if len(judgedOn) > 1 {
			on = "hosts " + strings.Join(judgedOn, " and ")
		}
		ep.Flows = "allowed (judged on " + on + ")"
	case e.DroppedBy != nil:
		ep.FlowsVerdict = PolicyFlowsNotJudged
		ep.Flows = fmt.Sprintf("not judged: dropped before any policy point by %s (host %s, table %s)", e.DroppedBy.Category, e.DroppedBy.Host, e.DroppedBy.TableName)
	case e.Verdict == VerdictForwarded:
		ep.FlowsVerdict = PolicyFlowsNotJudged
		ep.Flows = "not judged on host " + e.Query.Host + " (the policy point is on the receiving host)"
	default:
		ep.FlowsVerdict = PolicyFlowsNotJudged
		ep.Flows = "not judged: the packet met no policy point"
	}
}

func isPolicyTable(t TableID) bool {
	for _, x := range PolicyTables {
		if x == t {
			return true
		}
	}
	return false
}

// comparePolicy decides whether the flows agree with the model: a denial
// must be the same on both sides and name the same rule; an allow must not
// be a drop by the policy; a packet the policy never met agrees unless the
// model denies it and it was delivered anyway.
func (e *Explanation) comparePolicy(ep *ExplainPolicy) {
	ep.Agree = true
	switch ep.FlowsVerdict {
	case PolicyFlowsDenied:
		switch {
		case ep.ModelAllowed:
			ep.Agree = false
			ep.Diff = fmt.Sprintf("the model allows the packet (%s), the flows drop it (%s)", ep.Model, ep.Flows)
		case ep.ModelRule != ep.FlowsRule:
			ep.Agree = false
			ep.Diff = fmt.Sprintf("both deny, but the model names %q and the flows %q", ep.ModelRule, ep.FlowsRule)
		}
	case PolicyFlowsAllowed:
		if !ep.ModelAllowed {
			ep.Agree = false
			ep.Diff = fmt.Sprintf("the model denies the packet (%s), the flows let it through the policy (%s)", ep.Model, ep.Flows)
		}
	default:
		if !ep.ModelAllowed && e.Verdict == VerdictDelivered {
			ep.Agree = false
			ep.Diff = fmt.Sprintf("the model denies the packet (%s), but it is delivered without meeting a policy point", ep.Model)
		}
	}
}

// policyText renders the policy lines of the text output.
func (ep *ExplainPolicy) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "policy (vpc %s, state %s): %s\n", ep.VPC, ep.State, ep.Connection)
	fmt.Fprintf(&b, "  model: %s\n", ep.Model)
	for _, ch := range ep.Checks {
		verdict := "denied"
		if ch.Allowed {
			verdict = "allowed"
		}
		fmt.Fprintf(&b, "         %s: %s by %s\n", ch.Where, verdict, ch.Rule)
	}
	fmt.Fprintf(&b, "  flows: %s\n", ep.Flows)
	for _, n := range ep.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	if ep.Agree {
		b.WriteString("  the flows AGREE with the model\n")
	} else {
		fmt.Fprintf(&b, "  the flows DISAGREE with the model: %s\n", ep.Diff)
	}
	return b.String()
}

// ctNext returns one --ct-next value per conntrack lookup (a ct action
// that recirculates) the model's hops in g take, in order.
func (e *Explanation) ctNext(g []int) []string {
	var out []string
	for _, i := range g {
		for _, st := range e.Hops[i].trace.Steps {
			for _, a := range st.Flow.Actions {
				if ct, ok := a.(CT); ok && ct.Table != NoGoto {
					out = append(out, CtNextFlags(e.state))
				}
			}
		}
	}
	return out
}
