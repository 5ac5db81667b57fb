package flows

// The policy lint (vpcflow policy lint, docs/policy.md "Lint"): findings
// about a validated blueprint's ACL lists and security groups that
// validation cannot refuse because they are legal, but are almost always
// mistakes: rules that can never match, rules that allow nothing new,
// administrative ports open to the world, host service ports that the
// management guard drops anyway, unused lists and groups, references to
// empty groups. Pure: no I/O (ParseForLint reads bytes, LoadForLint the
// file).

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// LintSeverity grades a finding.
type LintSeverity string

// The severities, from the mildest.
const (
	// LintInfo: worth a look, often intended (a tier that accepts no new
	// connection).
	LintInfo LintSeverity = "info"
	// LintWarning: dead or misleading configuration, or something the lint
	// could not check.
	LintWarning LintSeverity = "warning"
	// LintError: the policy does not do what it says in a way that lets
	// traffic through (a deny that never applies because an allow takes its
	// traffic first).
	LintError LintSeverity = "error"
)

// The finding codes. They are stable: scripts and CI gates match them.
const (
	LintACLShadowedDeny   = "acl-shadowed-deny"    // error: a deny can never match, an allow takes (part of) its traffic first
	LintACLShadowedAllow  = "acl-shadowed-allow"   // warning: an allow can never match, a deny takes (part of) its traffic first
	LintACLRedundant      = "acl-redundant"        // warning: a rule can never match, earlier rules with its verdict take all its traffic
	LintTooComplex        = "too-complex"          // warning: the lint's work bound was reached; the rule was not checked
	LintSGRedundant       = "sg-redundant"         // warning: a group rule allows nothing the group's other rules do not
	LintSGRedundantMember = "sg-redundant-members" // info: every member's other groups already allow all of a rule
	LintWideAdminPort     = "wide-admin-port"      // warning: administrative ports allowed from a prefix shorter than /8
	LintHostPortDropped   = "host-port-dropped"    // warning: an allow of host service ports that mgmt_guard drops anyway
	LintSGUnused          = "sg-unused"            // warning: a group no VM uses and no rule references
	LintSGEmptyRef        = "sg-empty-ref"         // warning: a groups: reference to a group with no member in the judged VPC
	LintACLUnused         = "acl-unused"           // warning: a list no tier uses
	LintACLEgressOnly     = "acl-egress-only"      // info: a tier's list has egress rules only (ingress all denied)
	LintACLNoIngressAllow = "acl-no-ingress-allow" // info: a tier's list allows no ingress at all
)

// LintFinding is one finding of LintPolicy.
type LintFinding struct {
	Code     string       `json:"code"`
	Severity LintSeverity `json:"severity"`
	File     string       `json:"file"`
	Line     int          `json:"line"`   // 1-based; 0 = unknown (a blueprint not from ParseForLint)
	Column   int          `json:"column"` // 1-based; 0 = unknown
	Field    string       `json:"field"`  // e.g. "vpcs[0].acls[0].rules[2]"
	Message  string       `json:"message"`
	Fix      string       `json:"fix"`
	// Related are the field paths of the other rules involved (the rules
	// that shadow or cover this one), in order.
	Related []string `json:"related,omitempty"`
}

// String renders "FILE:LINE:COL: SEVERITY[CODE]: FIELD: MESSAGE (fix: FIX)",
// omitting unknown parts.
func (f LintFinding) String() string {
	var b strings.Builder
	loc := f.File
	if f.Line > 0 {
		loc += ":" + strconv.Itoa(f.Line)
		if f.Column > 0 {
			loc += ":" + strconv.Itoa(f.Column)
		}
	}
	if loc != "" {
		b.WriteString(loc + ": ")
	}
	fmt.Fprintf(&b, "%s[%s]: ", f.Severity, f.Code)
	if f.Field != "" {
		b.WriteString(f.Field + ": ")
	}
	b.WriteString(f.Message)
	if f.Fix != "" {
		b.WriteString(" (fix: " + f.Fix + ")")
	}
	return b.String()
}

// ParseForLint parses and validates exactly like Parse, and also keeps the
// source positions of the policy keys, so LintPolicy's findings name
// file:line:column (Parse drops them: a running controller need not hold
// them).
func ParseForLint(name string, data []byte) (*Blueprint, error) {
	return parse(name, data, true)
}

// LoadForLint reads the blueprint file at path and parses it with
// ParseForLint.
func LoadForLint(path string) (*Blueprint, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseForLint(path, data)
}

// policyPositions keeps the positions the lint needs: the policy keys,
// management, the VPC and tier items (not hosts, nor the VMs' other keys).
func policyPositions(all map[string]position) map[string]position {
	out := map[string]position{}
	for k, p := range all {
		switch {
		case strings.HasPrefix(k, "hosts"), strings.HasPrefix(k, "controllers"), strings.HasPrefix(k, "trusted_peers"):
		case strings.Contains(k, ".vms[") && !strings.Contains(k, ".security_groups"):
		default:
			out[k] = p
		}
	}
	return out
}

// WideAdminBits is the wide-prefix threshold of the wide-admin-port
// finding: an allow from a cidr shorter than /8 (more than 16,777,216
// addresses; 0.0.0.0/0 is the usual one) that still reaches an
// administrative port after the rules above it.
const WideAdminBits = 8

// AdminService is an administrative service the wide-admin-port finding
// looks for.
type AdminService struct {
	Name   string
	Protos []uint8 // ProtoTCP, ProtoUDP
	Ports  PortRange
}

func (s AdminService) String() string {
	var ps []string
	for _, p := range s.Protos {
		m := TrafficMatch{Proto: p}
		ps = append(ps, m.ProtoString()+"/"+s.Ports.String())
	}
	return s.Name + " " + strings.Join(ps, ", ")
}

// AdminServices are the administrative ports of the wide-admin-port
// finding (docs/policy.md lists them).
var AdminServices = []AdminService{
	{"ssh", []uint8{ProtoTCP}, PortRange{22, 22}},
	{"telnet", []uint8{ProtoTCP}, PortRange{23, 23}},
	{"rdp", []uint8{ProtoTCP, ProtoUDP}, PortRange{3389, 3389}},
	{"vnc", []uint8{ProtoTCP}, PortRange{5900, 5999}},
	{"mysql", []uint8{ProtoTCP}, PortRange{3306, 3306}},
	{"postgres", []uint8{ProtoTCP}, PortRange{5432, 5432}},
	{"mongodb", []uint8{ProtoTCP}, PortRange{27017, 27017}},
	{"redis", []uint8{ProtoTCP}, PortRange{6379, 6379}},
	{"elasticsearch", []uint8{ProtoTCP}, PortRange{9200, 9200}},
	{"memcached", []uint8{ProtoTCP, ProtoUDP}, PortRange{11211, 11211}},
	{"docker", []uint8{ProtoTCP}, PortRange{2375, 2376}},
	{"etcd", []uint8{ProtoTCP}, PortRange{2379, 2380}},
	{"kubelet", []uint8{ProtoTCP}, PortRange{10250, 10250}},
}

// LintPolicy returns the lint findings of a validated blueprint, in file
// order (generation order when positions are unknown). A blueprint
// without policy keys has none.
func LintPolicy(bp *Blueprint) []LintFinding {
	l := newLinter(bp)
	l.lintACLs()
	l.lintSGs()
	out := l.out
	if bp.lintPos != nil {
		sort.SliceStable(out, func(i, j int) bool {
			if out[i].Line != out[j].Line {
				return out[i].Line < out[j].Line
			}
			return out[i].Column < out[j].Column
		})
	}
	return out
}

// linter holds one lint run.
type linter struct {
	bp  *Blueprint
	bud budget
	out []LintFinding
	// members[g]: the guest NICs that carry security group g.
	members map[int][]VMRef
	sgIdx   map[string]int
	// model resolves group members per VPC (groups: references).
	model *PolicyModel
	// sgBudgetNoted: the work budget ran out in the security groups, said.
	sgBudgetNoted bool
}

func newLinter(bp *Blueprint) *linter {
	l := &linter{bp: bp, bud: budget{maxLintWork}, members: map[int][]VMRef{}, sgIdx: map[string]int{}, model: NewPolicyModel(bp)}
	for i := range bp.SecurityGroups {
		l.sgIdx[bp.SecurityGroups[i].Name] = i
	}
	for i := range bp.VPCs {
		p := &bp.VPCs[i]
		for j := range p.Tiers {
			t := &p.Tiers[j]
			for k := range t.VMs {
				for _, g := range t.VMs[k].SecurityGroups {
					if gi, ok := l.sgIdx[g]; ok {
						l.members[gi] = append(l.members[gi], VMRef{VPC: p, Tier: t, VM: &t.VMs[k]})
					}
				}
			}
		}
	}
	return l
}

// add records a finding at field.
func (l *linter) add(sev LintSeverity, code, field, fix string, related []string, format string, args ...any) {
	f := LintFinding{Code: code, Severity: sev, File: l.bp.Source, Field: field, Message: fmt.Sprintf(format, args...), Fix: fix, Related: related}
	f.Line, f.Column = l.pos(field)
	l.out = append(l.out, f)
}

// pos is the position of field, or of its nearest known ancestor.
func (l *linter) pos(field string) (int, int) {
	if l.bp.lintPos == nil {
		return 0, 0
	}
	for {
		if p, ok := l.bp.lintPos[field]; ok {
			return p.line, p.col
		}
		if field == "" {
			return 0, 0
		}
		i := strings.LastIndexAny(field, ".[")
		if i < 0 {
			field = ""
		} else {
			field = field[:i]
		}
	}
}

// remoteString renders a rule's remote side: "0.0.0.0/0", "10.2.0.0/16,
// 10.3.0.0/16 and 2 more", "group web-sg".
func (l *linter) remoteString(m *TrafficMatch, groups []string) string {
	var parts []string
	for _, p := range m.Prefixes {
		parts = append(parts, p.String())
	}
	for _, g := range groups {
		parts = append(parts, "group "+g)
	}
	if len(parts) > 3 {
		parts = append(parts[:3], fmt.Sprintf("and %d more", len(parts)-3))
	}
	return strings.Join(parts, ", ")
}

// andList formats names: "a", "a and b", "a, b and c".
func andList(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}
