package flows

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	ofp "github.com/contiv/libOpenflow/openflow13"
)

// This file encodes Flows as OpenFlow 1.3 FLOW_MOD messages and decodes the
// switch's flow-stats entries back into Flows. It uses libOpenflow's protocol
// constants but writes the bytes itself: libOpenflow's FlowMod.MarshalBinary
// writes out_port into the out_group field and logs every instruction at
// debug level (an allocation per flow), and its match decoder does not know
// tun_src/tun_dst or conj_id. Decoding is bounds-checked everywhere: a switch
// cannot make it panic.

// Special OpenFlow port numbers.
const (
	OFPPController = 0xfffffffd
	OFPPInPort     = 0xfffffff8
	OFPPLocal      = 0xfffffffe
	OFPPAny        = 0xffffffff
	OFPGAny        = 0xffffffff
)

// PortMap maps port names to OpenFlow port numbers for one bridge.
type PortMap map[string]uint32

func (pm PortMap) number(name string) (uint32, bool) {
	switch name {
	case PortLocal:
		return OFPPLocal, true
	case PortInPort:
		return OFPPInPort, true
	case PortController:
		return OFPPController, true
	}
	if strings.HasPrefix(name, "#") {
		n, err := strconv.ParseUint(name[1:], 10, 32)
		return uint32(n), err == nil
	}
	n, ok := pm[name]
	return n, ok
}

// Names returns the reverse map.
func (pm PortMap) Names() map[uint32]string {
	r := make(map[uint32]string, len(pm)+2)
	for n, p := range pm {
		r[p] = n
	}
	r[OFPPLocal] = PortLocal
	r[OFPPInPort] = PortInPort
	r[OFPPController] = PortController
	return r
}

// Bind prepares compiled flows for one bridge: flows matching a port the
// bridge does not have are left out, and outputs to missing ports are removed
// from action lists. missing lists the port names not found.
func Bind(fs []Flow, ports PortMap) (bound []Flow, missing []string) {
	seen := map[string]bool{}
	miss := func(p string) {
		if !seen[p] {
			seen[p] = true
			missing = append(missing, p)
		}
	}
	bound = make([]Flow, 0, len(fs))
	for _, f := range fs {
		if mf, ok := f.Match.Get(FInPort); ok {
			if _, ok := ports.number(mf.Port); !ok {
				miss(mf.Port)
				continue
			}
		}
		drop, copied := false, false
		for i, a := range f.Actions {
			switch o := a.(type) {
			case Output:
				if _, ok := ports.number(o.Port); !ok {
					miss(o.Port)
					drop = true
				}
			case Bundle:
				if b, all := bindBundle(o, ports, miss); !all {
					if !copied { // the compiled flow's slice is shared
						f.Actions, copied = append([]Action(nil), f.Actions...), true
					}
					f.Actions[i] = b
					drop = drop || len(b.Members) == 0
				}
			}
		}
		if drop {
			acts := make([]Action, 0, len(f.Actions))
			// Remove the outputs to missing ports together with the tunnel
			// set_fields that only prepare them.
			var pending []Action
			for _, a := range f.Actions {
				switch x := a.(type) {
				case SetField:
					if x.Field == FTunID || x.Field == FTunDst {
						pending = append(pending, a)
						continue
					}
					acts = append(acts, a)
				case Output:
					if _, ok := ports.number(x.Port); ok {
						acts = append(acts, pending...)
						acts = append(acts, a)
					}
					pending = nil
				case Bundle:
					if len(x.Members) > 0 {
						acts = append(acts, pending...)
						acts = append(acts, a)
					}
					pending = nil
				default:
					acts = append(acts, a)
				}
			}
			f.Actions = acts
		}
		bound = append(bound, f)
	}
	return bound, missing
}

// bindBundle keeps the bundle members the bridge has (a bond member that is
// missing is left out, like an output to a missing port); all reports
// whether every member is present.
func bindBundle(b Bundle, ports PortMap, miss func(string)) (Bundle, bool) {
	all := true
	for _, m := range b.Members {
		if _, ok := ports.number(m); !ok {
			all = false
			miss(m)
		}
	}
	if all {
		return b, true
	}
	kept := make([]string, 0, len(b.Members))
	for _, m := range b.Members {
		if _, ok := ports.number(m); ok {
			kept = append(kept, m)
		}
	}
	b.Members = kept
	return b, false
}

func oxmHeader(f Field, masked bool) uint32 {
	fi := f.info()
	l := fi.size
	m := uint32(0)
	if masked {
		l *= 2
		m = 1
	}
	return uint32(fi.class)<<16 | uint32(fi.field)<<9 | m<<8 | uint32(l)
}

func putValue(b []byte, size int, v uint64) {
	for i := 0; i < size; i++ {
		b[i] = byte(v >> uint(8*(size-1-i)))
	}
}

func getValue(b []byte) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

// appendMatch appends an ofp_match (OXM) padded to 8 bytes.
func appendMatch(buf []byte, m Match, ports PortMap) ([]byte, error) {
	start := len(buf)
	buf = append(buf, 0, 1, 0, 0) // type OFPMT_OXM, length later
	for _, x := range m {
		fi := x.Field.info()
		v := x.Value
		if x.Field == FInPort {
			n, ok := ports.number(x.Port)
			if !ok {
				return nil, fmt.Errorf("port %q is not on the bridge", x.Port)
			}
			v = uint64(n)
		}
		var h [4]byte
		binary.BigEndian.PutUint32(h[:], oxmHeader(x.Field, x.Masked))
		buf = append(buf, h[:]...)
		var val [16]byte
		if fi.size == 16 {
			put128(val[:], x.Hi, v)
			buf = append(buf, val[:]...)
			if x.Masked {
				put128(val[:], x.MaskHi, x.Mask)
				buf = append(buf, val[:]...)
			}
			continue
		}
		putValue(val[:fi.size], fi.size, v)
		buf = append(buf, val[:fi.size]...)
		if x.Masked {
			putValue(val[:fi.size], fi.size, x.Mask)
			buf = append(buf, val[:fi.size]...)
		}
	}
	binary.BigEndian.PutUint16(buf[start+2:], uint16(len(buf)-start))
	for (len(buf)-start)%8 != 0 {
		buf = append(buf, 0)
	}
	return buf, nil
}

const nxVendor = 0x00002320

// NXAST_BUNDLE (libOpenflow has no constant for it) and the NXM header of
// in_port, the only member_type Open vSwitch accepts.
const (
	nxastBundle = 12
	nxmOfInPort = 0x00000002
)

func appendActions(buf []byte, acts []Action, ports PortMap) ([]byte, error) {
	for _, a := range acts {
		switch x := a.(type) {
		case Output:
			n, ok := ports.number(x.Port)
			if !ok {
				return nil, fmt.Errorf("port %q is not on the bridge", x.Port)
			}
			var b [16]byte
			binary.BigEndian.PutUint16(b[0:], ofp.ActionType_Output)
			binary.BigEndian.PutUint16(b[2:], 16)
			binary.BigEndian.PutUint32(b[4:], n)
			if n == OFPPController {
				binary.BigEndian.PutUint16(b[8:], x.MaxLen)
			}
			buf = append(buf, b[:]...)
		case SetField:
			size := x.Field.info().size
			l := (4 + 4 + size + 7) / 8 * 8
			b := make([]byte, l)
			binary.BigEndian.PutUint16(b[0:], ofp.ActionType_SetField)
			binary.BigEndian.PutUint16(b[2:], uint16(l))
			binary.BigEndian.PutUint32(b[4:], oxmHeader(x.Field, false))
			putValue(b[8:8+size], size, x.Value)
			buf = append(buf, b...)
		case Move:
			var b [24]byte
			binary.BigEndian.PutUint16(b[0:], ofp.ActionType_Experimenter)
			binary.BigEndian.PutUint16(b[2:], 24)
			binary.BigEndian.PutUint32(b[4:], nxVendor)
			binary.BigEndian.PutUint16(b[8:], ofp.NXAST_REG_MOVE)
			binary.BigEndian.PutUint16(b[10:], x.NBits)
			binary.BigEndian.PutUint16(b[12:], x.SrcOfs)
			binary.BigEndian.PutUint16(b[14:], x.DstOfs)
			binary.BigEndian.PutUint32(b[16:], oxmHeader(x.Src, false))
			binary.BigEndian.PutUint32(b[20:], oxmHeader(x.Dst, false))
			buf = append(buf, b[:]...)
		case PushVLAN:
			buf = append(buf, 0, ofp.ActionType_PushVlan, 0, 8, byte(x.EthType>>8), byte(x.EthType), 0, 0)
		case PopVLAN:
			buf = append(buf, 0, ofp.ActionType_PopVlan, 0, 8, 0, 0, 0, 0)
		case DecTTL:
			buf = append(buf, 0, ofp.ActionType_DecNwTtl, 0, 8, 0, 0, 0, 0)
		case Bundle:
			// nx_action_bundle: 32 bytes, then one 16-bit port per member,
			// padded to 8 bytes. member_type is NXM_OF_IN_PORT; ofs_nbits and
			// dst stay zero (they are for bundle_load).
			l := (32 + 2*len(x.Members) + 7) / 8 * 8
			b := make([]byte, l)
			binary.BigEndian.PutUint16(b[0:], ofp.ActionType_Experimenter)
			binary.BigEndian.PutUint16(b[2:], uint16(l))
			binary.BigEndian.PutUint32(b[4:], nxVendor)
			binary.BigEndian.PutUint16(b[8:], nxastBundle)
			binary.BigEndian.PutUint16(b[10:], uint16(x.Algorithm))
			binary.BigEndian.PutUint16(b[12:], uint16(x.Fields))
			binary.BigEndian.PutUint16(b[14:], x.Basis)
			binary.BigEndian.PutUint32(b[16:], nxmOfInPort)
			binary.BigEndian.PutUint16(b[20:], uint16(len(x.Members)))
			for i, m := range x.Members {
				n, ok := ports.number(m)
				if !ok {
					return nil, fmt.Errorf("bundle member %q is not on the bridge", m)
				}
				if n > 0xff00 {
					return nil, fmt.Errorf("bundle member %q has port number %d: bundle members must be physical ports", m, n)
				}
				binary.BigEndian.PutUint16(b[32+2*i:], uint16(n))
			}
			buf = append(buf, b...)
		case Conjunction:
			var b [16]byte
			binary.BigEndian.PutUint16(b[0:], ofp.ActionType_Experimenter)
			binary.BigEndian.PutUint16(b[2:], 16)
			binary.BigEndian.PutUint32(b[4:], nxVendor)
			binary.BigEndian.PutUint16(b[8:], ofp.NXAST_CONJUNCTION)
			b[10] = x.Clause - 1
			b[11] = x.NClauses
			binary.BigEndian.PutUint32(b[12:], x.ID)
			buf = append(buf, b[:]...)
		case CT:
			var err error
			if buf, err = appendCT(buf, x); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("cannot encode action %T", a)
		}
	}
	return buf, nil
}

// FlowMod commands.
const (
	CmdAdd          = ofp.FC_ADD
	CmdDeleteStrict = ofp.FC_DELETE_STRICT
)

// AppendFlowMod appends a complete OpenFlow 1.3 FLOW_MOD message (xid 0; the
// runtime sets it) for f. For CmdDeleteStrict a decoded flow's RawMatch is
// used verbatim when present, so foreign flows are deleted exactly.
func AppendFlowMod(buf []byte, f *Flow, cmd uint8, ports PortMap) ([]byte, error) {
	start := len(buf)
	var h [48]byte
	h[0] = ofp.VERSION
	h[1] = ofp.Type_FlowMod
	binary.BigEndian.PutUint64(h[8:], uint64(f.Cookie))
	h[24] = byte(f.Table)
	h[25] = cmd
	binary.BigEndian.PutUint16(h[30:], f.Priority)
	binary.BigEndian.PutUint32(h[32:], 0xffffffff) // buffer_id: none
	binary.BigEndian.PutUint32(h[36:], OFPPAny)
	binary.BigEndian.PutUint32(h[40:], OFPGAny)
	buf = append(buf, h[:]...)
	var err error
	if cmd == CmdDeleteStrict && len(f.RawMatch) > 0 {
		buf = append(buf, f.RawMatch...)
	} else if buf, err = appendMatch(buf, f.Match, ports); err != nil {
		return nil, err
	}
	if cmd != CmdDeleteStrict {
		if f.Meter != 0 {
			var m [8]byte
			binary.BigEndian.PutUint16(m[0:], 6) // OFPIT_METER
			binary.BigEndian.PutUint16(m[2:], 8)
			binary.BigEndian.PutUint32(m[4:], f.Meter)
			buf = append(buf, m[:]...)
		}
		if len(f.Actions) > 0 {
			is := len(buf)
			buf = append(buf, 0, 4, 0, 0, 0, 0, 0, 0) // OFPIT_APPLY_ACTIONS
			if buf, err = appendActions(buf, f.Actions, ports); err != nil {
				return nil, err
			}
			binary.BigEndian.PutUint16(buf[is+2:], uint16(len(buf)-is))
		}
		if f.Goto != NoGoto {
			buf = append(buf, 0, 1, 0, 8, byte(f.Goto), 0, 0, 0) // OFPIT_GOTO_TABLE
		}
	}
	if len(buf)-start > 0xffff {
		return nil, fmt.Errorf("flow %s: FLOW_MOD larger than 64 KiB", f)
	}
	binary.BigEndian.PutUint16(buf[start+2:], uint16(len(buf)-start))
	return buf, nil
}

// decodeErr is a malformed-entry error.
func decodeErr(format string, a ...interface{}) error {
	return fmt.Errorf("malformed flow stats: "+format, a...)
}

// decodeStatsHeader decodes the fixed part of one ofp_flow_stats entry
// (table, duration, priority, cookie, counters) and returns the rest of the
// entry: the match, then the instructions.
func decodeStatsHeader(e []byte) (f Flow, rest []byte, err error) {
	if len(e) < 56 {
		return f, nil, decodeErr("entry of %d bytes", len(e))
	}
	l := int(binary.BigEndian.Uint16(e[0:]))
	if l < 56 || l > len(e) {
		return f, nil, decodeErr("length %d of %d", l, len(e))
	}
	e = e[:l]
	f.Table = TableID(e[2])
	f.DurationMs = uint64(binary.BigEndian.Uint32(e[4:]))*1000 + uint64(binary.BigEndian.Uint32(e[8:]))/1e6
	f.Priority = binary.BigEndian.Uint16(e[12:])
	f.Cookie = Cookie(binary.BigEndian.Uint64(e[24:]))
	f.Packets = binary.BigEndian.Uint64(e[32:])
	f.Bytes = binary.BigEndian.Uint64(e[40:])
	return f, e[48:], nil
}

// DecodeFlowStats decodes one ofp_flow_stats entry (as returned by the
// runtime's flow dump). Port numbers are named through names; an unknown
// number becomes "#N". Anything it cannot represent sets Flow.Unknown (the
// flow is then foreign: reported and removed by reconcile).
func DecodeFlowStats(e []byte, names map[uint32]string) (Flow, error) {
	f, m, err := decodeStatsHeader(e)
	if err != nil {
		return f, err
	}
	if binary.BigEndian.Uint16(m[0:]) != 1 {
		return f, decodeErr("match type %d", binary.BigEndian.Uint16(m[0:]))
	}
	ml := int(binary.BigEndian.Uint16(m[2:]))
	padded := (ml + 7) / 8 * 8
	if ml < 4 || padded > len(m) {
		return f, decodeErr("match length %d", ml)
	}
	f.RawMatch = append([]byte(nil), m[:padded]...)
	var unknown []string
	var mfBuf [12]MatchField
	mfs := mfBuf[:0]
	fields := m[4:ml]
	for len(fields) > 0 {
		if len(fields) < 4 {
			return f, decodeErr("truncated OXM header")
		}
		h := binary.BigEndian.Uint32(fields)
		class, field, hasMask, fl := uint16(h>>16), uint8(h>>9)&0x7f, h&0x100 != 0, int(h&0xff)
		if 4+fl > len(fields) {
			return f, decodeErr("OXM field overruns the match")
		}
		body := fields[4 : 4+fl]
		fields = fields[4+fl:]
		size := fl
		if hasMask {
			size = fl / 2
		}
		fd, ok := lookupField(class, field, size)
		if !ok || (size > 8 && size != 16) {
			unknown = append(unknown, fmt.Sprintf("match oxm 0x%04x:%d", class, field))
			continue
		}
		var mf MatchField
		if size == 16 {
			mf = MatchField{Field: fd, Hi: getValue(body[:8]), Value: getValue(body[8:16])}
			if hasMask {
				mf.Masked, mf.MaskHi, mf.Mask = true, getValue(body[16:24]), getValue(body[24:32])
			}
		} else {
			mf = MatchField{Field: fd, Value: getValue(body[:size])}
			if hasMask {
				mf.Masked, mf.Mask = true, getValue(body[size:2*size])
			}
		}
		if fd == FInPort {
			mf.Port = portName(uint32(mf.Value), names)
			mf.Value = 0
		}
		mfs = append(mfs, mf)
	}
	f.Match = matchOf(mfs)
	ins := e[48+padded:]
	for len(ins) > 0 {
		if len(ins) < 4 {
			return f, decodeErr("truncated instruction")
		}
		t, il := binary.BigEndian.Uint16(ins[0:]), int(binary.BigEndian.Uint16(ins[2:]))
		if il < 4 || il > len(ins) {
			return f, decodeErr("instruction length %d", il)
		}
		body := ins[:il]
		ins = ins[il:]
		switch t {
		case 6: // OFPIT_METER
			if il < 8 {
				return f, decodeErr("meter length %d", il)
			}
			f.Meter = binary.BigEndian.Uint32(body[4:])
		case ofp.InstrType_GOTO_TABLE:
			if il < 8 {
				return f, decodeErr("goto_table length %d", il)
			}
			f.Goto = TableID(body[4])
		case ofp.InstrType_APPLY_ACTIONS:
			if il < 8 {
				return f, decodeErr("apply_actions length %d", il)
			}
			acts, unk, err := decodeActions(body[8:], names)
			if err != nil {
				return f, err
			}
			f.Actions = append(f.Actions, acts...)
			unknown = append(unknown, unk...)
		default:
			unknown = append(unknown, fmt.Sprintf("instruction %d", t))
		}
	}
	if len(unknown) > 0 {
		f.Unknown = strings.Join(unknown, ";")
	}
	return f, nil
}

func portName(n uint32, names map[uint32]string) string {
	if s, ok := names[n]; ok {
		return s
	}
	switch n {
	case OFPPLocal:
		return PortLocal
	case OFPPInPort:
		return PortInPort
	case OFPPController:
		return PortController
	}
	return "#" + strconv.FormatUint(uint64(n), 10)
}

func decodeActions(b []byte, names map[uint32]string) ([]Action, []string, error) {
	var acts []Action
	var unknown []string
	for len(b) > 0 {
		if len(b) < 8 {
			return nil, nil, decodeErr("truncated action")
		}
		t, l := binary.BigEndian.Uint16(b[0:]), int(binary.BigEndian.Uint16(b[2:]))
		if l < 8 || l > len(b) || l%8 != 0 {
			return nil, nil, decodeErr("action length %d", l)
		}
		a := b[:l]
		b = b[l:]
		switch t {
		case ofp.ActionType_Output:
			if l < 16 {
				return nil, nil, decodeErr("output length %d", l)
			}
			o := Output{Port: portName(binary.BigEndian.Uint32(a[4:]), names)}
			if o.Port == PortController {
				o.MaxLen = binary.BigEndian.Uint16(a[8:])
			}
			acts = append(acts, o)
		case ofp.ActionType_SetField:
			h := binary.BigEndian.Uint32(a[4:])
			class, field, hasMask, fl := uint16(h>>16), uint8(h>>9)&0x7f, h&0x100 != 0, int(h&0xff)
			fd, ok := lookupField(class, field, fl)
			if !ok || hasMask || 8+fl > l || fl > 8 {
				unknown = append(unknown, fmt.Sprintf("set_field oxm 0x%04x:%d", class, field))
				continue
			}
			acts = append(acts, SetField{fd, getValue(a[8 : 8+fl])})
		case ofp.ActionType_PushVlan:
			acts = append(acts, PushVLAN{EthType: binary.BigEndian.Uint16(a[4:])})
		case ofp.ActionType_PopVlan:
			acts = append(acts, PopVLAN{})
		case ofp.ActionType_DecNwTtl:
			acts = append(acts, DecTTL{})
		case ofp.ActionType_Experimenter:
			if l < 16 || binary.BigEndian.Uint32(a[4:]) != nxVendor {
				unknown = append(unknown, "experimenter action")
				continue
			}
			switch binary.BigEndian.Uint16(a[8:]) {
			case ofp.NXAST_REG_MOVE:
				if l < 24 {
					return nil, nil, decodeErr("reg_move length %d", l)
				}
				src, dst := binary.BigEndian.Uint32(a[16:]), binary.BigEndian.Uint32(a[20:])
				sf, ok1 := lookupField(uint16(src>>16), uint8(src>>9)&0x7f, int(src&0xff))
				df, ok2 := lookupField(uint16(dst>>16), uint8(dst>>9)&0x7f, int(dst&0xff))
				if !ok1 || !ok2 {
					unknown = append(unknown, "reg_move of an unknown field")
					continue
				}
				acts = append(acts, Move{Src: sf, Dst: df, NBits: binary.BigEndian.Uint16(a[10:]),
					SrcOfs: binary.BigEndian.Uint16(a[12:]), DstOfs: binary.BigEndian.Uint16(a[14:])})
			case ofp.NXAST_CONJUNCTION:
				acts = append(acts, Conjunction{ID: binary.BigEndian.Uint32(a[12:]), Clause: a[10] + 1, NClauses: a[11]})
			case nxastCT:
				c, ok := decodeCT(a, names)
				if !ok {
					unknown = append(unknown, "ct action vpcflow cannot represent")
					continue
				}
				acts = append(acts, c)
			case nxastBundle:
				b, ok := decodeBundle(a, names)
				if !ok {
					unknown = append(unknown, "bundle action vpcflow cannot represent")
					continue
				}
				acts = append(acts, b)
			default:
				unknown = append(unknown, fmt.Sprintf("nx action %d", binary.BigEndian.Uint16(a[8:])))
			}
		default:
			unknown = append(unknown, fmt.Sprintf("action %d", t))
		}
	}
	return acts, unknown, nil
}

// decodeBundle decodes an NXAST_BUNDLE action (a is the whole action,
// length already checked to be a multiple of 8 and at least 16). Anything
// but the form AppendFlowMod writes (in_port members, no load destination)
// is not represented.
func decodeBundle(a []byte, names map[uint32]string) (Bundle, bool) {
	if len(a) < 32 {
		return Bundle{}, false
	}
	n := int(binary.BigEndian.Uint16(a[20:]))
	if binary.BigEndian.Uint32(a[16:]) != nxmOfInPort || 32+2*n > len(a) ||
		binary.BigEndian.Uint16(a[22:]) != 0 || binary.BigEndian.Uint32(a[24:]) != 0 {
		return Bundle{}, false
	}
	b := Bundle{Algorithm: BundleAlgorithm(binary.BigEndian.Uint16(a[10:])), Fields: HashFields(binary.BigEndian.Uint16(a[12:])),
		Basis: binary.BigEndian.Uint16(a[14:]), Members: make([]string, n)}
	for i := range b.Members {
		b.Members[i] = portName(uint32(binary.BigEndian.Uint16(a[32+2*i:])), names)
	}
	return b, true
}

// matchOf builds a normalised Match from fields with one allocation: the
// same result as applying Match.With to each field in turn (a later field
// replaces an earlier one of the same Field; masks are normalised), without
// With's copy and sort per field, which dominated compile and decode
// (pprof at 200 bridges: Match.With 21% of controller CPU).
func matchOf(fields []MatchField) Match {
	if len(fields) == 0 {
		return nil
	}
	out := make(Match, 0, len(fields))
	for _, mf := range fields {
		if !normalizeMask(&mf) {
			continue
		}
		replaced := false
		for i := range out {
			if out[i].Field == mf.Field {
				// With removes the old field and appends: same after the sort.
				out[i] = mf
				replaced = true
				break
			}
		}
		if !replaced {
			out = append(out, mf)
		}
	}
	for i := 1; i < len(out); i++ { // matches are short: insertion sort
		for j := i; j > 0 && out[j].Field < out[j-1].Field; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
