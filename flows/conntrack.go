package flows

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	ofp "github.com/contiv/libOpenflow/openflow13"
)

// Connection tracking: the ct_state bits, and the Nicira ct action that
// stateful policy compiles to (docs/policy.md). Matching on ct_state and
// ct_mark, and the ct action, are what the policy stages need: only new
// connections meet the rules, replies pass, invalid packets are dropped.

// ct_state bits (Open vSwitch's CS_* flags).
const (
	CtNew = 0x01
	CtEst = 0x02
	CtRel = 0x04
	CtRpl = 0x08
	CtInv = 0x10
	CtTrk = 0x20
)

var ctStateNames = []struct {
	bit  uint64
	name string
}{{CtNew, "new"}, {CtEst, "est"}, {CtRel, "rel"}, {CtRpl, "rpl"}, {CtInv, "inv"}, {CtTrk, "trk"}}

// ctStateString renders a ct_state match as ovs-ofctl writes it
// ("+trk+new", "-new+est+trk"): a flag in the mask is + when set in the
// value, - when clear.
func ctStateString(v, mask uint64) string {
	var b strings.Builder
	for _, f := range ctStateNames {
		if mask&f.bit == 0 {
			continue
		}
		if v&f.bit != 0 {
			b.WriteString("+")
		} else {
			b.WriteString("-")
		}
		b.WriteString(f.name)
	}
	if rest := mask &^ 0x3f; rest != 0 {
		fmt.Fprintf(&b, "0x%x/0x%x", v&rest, rest)
	}
	return b.String()
}

// CtStateMatch matches the given flags set (on) and clear (off).
func CtStateMatch(on, off uint64) MatchField {
	return MatchField{Field: FCtState, Value: on, Mask: on | off, Masked: true}
}

// CT is the Nicira ct action (NXAST_CT): send the packet through the
// connection tracker in Zone; with Commit, commit the connection and run
// Exec (set_field of ct_mark) on it; with Table (not NoGoto), recirculate
// the packet to Table with ct_state, ct_zone and ct_mark filled in.
type CT struct {
	Commit bool
	Zone   uint16
	Table  TableID
	Exec   []SetField
}

// String renders the action in ovs-ofctl syntax.
func (c CT) String() string {
	var parts []string
	if c.Commit {
		parts = append(parts, "commit")
	}
	parts = append(parts, "zone="+strconv.Itoa(int(c.Zone)))
	if c.Table != NoGoto {
		parts = append(parts, "table="+strconv.Itoa(int(c.Table)))
	}
	if len(c.Exec) > 0 {
		ex := make([]string, len(c.Exec))
		for i, s := range c.Exec {
			ex[i] = s.String()
		}
		parts = append(parts, "exec("+strings.Join(ex, ",")+")")
	}
	return "ct(" + strings.Join(parts, ",") + ")"
}

// nxastCT is NXAST_CT; nxCTRecircNone is its recirc_table for none;
// nxCTCommit its commit flag.
const (
	nxastCT        = 35
	nxCTRecircNone = 0xff
	nxCTCommit     = 1
)

// appendCT appends an nx_action_conntrack (24 bytes) with its nested
// actions.
func appendCT(buf []byte, c CT) ([]byte, error) {
	nested, err := appendActions(nil, setFieldActions(c.Exec), nil)
	if err != nil {
		return nil, err
	}
	l := 24 + len(nested)
	b := make([]byte, 24, l)
	binary.BigEndian.PutUint16(b[0:], ofp.ActionType_Experimenter)
	binary.BigEndian.PutUint16(b[2:], uint16(l))
	binary.BigEndian.PutUint32(b[4:], nxVendor)
	binary.BigEndian.PutUint16(b[8:], nxastCT)
	if c.Commit {
		binary.BigEndian.PutUint16(b[10:], nxCTCommit)
	}
	// zone_src 0: the zone is the immediate zone_imm.
	binary.BigEndian.PutUint16(b[16:], c.Zone)
	b[18] = nxCTRecircNone
	if c.Table != NoGoto {
		b[18] = byte(c.Table)
	}
	b = append(b, nested...)
	return append(buf, b...), nil
}

func setFieldActions(s []SetField) []Action {
	out := make([]Action, len(s))
	for i := range s {
		out[i] = s[i]
	}
	return out
}

// decodeCT decodes an NXAST_CT action (a is the whole action); ok is false
// for a form vpcflow does not write (a zone from a field, an ALG, nested
// actions other than set_field).
func decodeCT(a []byte, names map[uint32]string) (CT, bool) {
	if len(a) < 24 {
		return CT{}, false
	}
	flags := binary.BigEndian.Uint16(a[10:])
	if flags&^nxCTCommit != 0 || binary.BigEndian.Uint32(a[12:]) != 0 || binary.BigEndian.Uint16(a[20:]) != 0 {
		return CT{}, false
	}
	c := CT{Commit: flags&nxCTCommit != 0, Zone: binary.BigEndian.Uint16(a[16:])}
	if a[18] != nxCTRecircNone {
		c.Table = TableID(a[18])
	}
	acts, unknown, err := decodeActions(a[24:], names)
	if err != nil || len(unknown) > 0 {
		return CT{}, false
	}
	for _, x := range acts {
		s, ok := x.(SetField)
		if !ok {
			return CT{}, false
		}
		c.Exec = append(c.Exec, s)
	}
	return c, true
}
