package flows

// Field is a match field or action target the pipeline uses. Every field is
// declared once here with its ovs-ofctl name and its OpenFlow 1.3 encoding
// (OXM where OpenFlow 1.3 has one, else the Nicira NXM header that OVS uses).
type Field uint8

// The fields vpcflow matches on or writes. Order is the canonical order used
// when rendering a match.
const (
	FInPort Field = iota + 1
	FEthSrc
	FEthDst
	FEthType
	FVLANVID
	FIPProto
	FIPv4Src
	FIPv4Dst
	FTCPSrc
	FTCPDst
	FUDPSrc
	FUDPDst
	FARPOp
	FARPSpa
	FARPTpa
	FARPSha
	FARPTha
	FTunID
	FTunSrc
	FTunDst
	FReg0
	FReg1
	FReg2
	FReg3
	FConjID
	FICMPType // icmp_type (ICMPv4)
	FICMPCode // icmp_code (ICMPv4)
	FCtState  // ct_state: CtNew, CtEst, ... (conntrack.go)
	FCtZone   // ct_zone
	FCtMark   // ct_mark
	FReg4
	FReg5
	FReg6
	FReg7
	// IPv6 (ipv6.go, compile_ipv6.go). 128-bit fields keep their high 64
	// bits in MatchField.Hi/MaskHi.
	FIPv6Src       // ipv6_src
	FIPv6Dst       // ipv6_dst
	FICMPv6Type    // icmpv6_type
	FNDTarget      // nd_target (NS, NA)
	FNDSll         // nd_sll: the source link-layer address option (NS)
	FNDTll         // nd_tll: the target link-layer address option (NA)
	FNDReserved    // nd_reserved: the NS/NA flags word (R, S, O in the top bits)
	FNDOptionsType // nd_options_type: the type of the first ND option
	numFields
)

// Register layout (STYLE: name the bits once).
//
//	reg0[0..31]  RegTier:   the tier's VNI, set when a packet is classified
//	                         (from its VM port or from its tunnel key).
//	reg1[0..31]  RegOrigin: where the packet entered: OriginVM, OriginTunnel
//	                         or OriginUplink (a VLAN tier's tagged frame).
//	                         Split horizon: only OriginVM traffic leaves
//	                         the host (tunnel or tagged uplink).
//	reg2[0..31]  RegVPC:    a distributed-routing VPC's id (VPCObject), set
//	                         when a guest sends to its tier's gateway MAC
//	                         for an address in another tier of its VPC.
//
// A tier's key (Tier.Key, in reg0 and in cookies) is its VNI for an overlay
// tier and VLANKeyBase+VLAN id for a VLAN tier: the two ranges never meet,
// so no packet of one can be marked as the other.
//
//	reg3..reg7   the policy stages' registers (policy_compile.go):
//	reg3 RegPolVPC   the judged VPC's id (VPCObject)
//	reg4 RegPolSrc   the connection's original source address
//	reg5 RegPolDst   its original destination address
//	reg6 RegPolL4    its original destination port (tcp, udp), or
//	                 ICMP type | code<<8 of the original direction
//	reg7 RegPolPoint where the judgement runs: PointFromVM, PointToVM
const (
	RegTier   = FReg0
	RegOrigin = FReg1
	RegVPC    = FReg2

	RegPolVPC   = FReg3
	RegPolSrc   = FReg4
	RegPolDst   = FReg5
	RegPolL4    = FReg6
	RegPolPoint = FReg7
)

// regIndex is a register field's number (reg0..reg7), or -1.
func regIndex(f Field) int {
	switch f {
	case FReg0, FReg1, FReg2, FReg3:
		return int(f - FReg0)
	case FReg4, FReg5, FReg6, FReg7:
		return 4 + int(f-FReg4)
	}
	return -1
}

// Values of RegOrigin.
const (
	OriginVM     = 1
	OriginTunnel = 2
	OriginUplink = 3
)

// VLAN ids: OFPVID_PRESENT is the OXM VLAN_VID bit of a tagged frame.
const (
	VIDPresent = 0x1000
	EthVLAN    = 0x8100
)

// Ethernet types and IP protocols used by the pipeline.
const (
	EthIPv4 = 0x0800
	EthARP  = 0x0806
	EthIPv6 = 0x86dd

	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoGRE    = 47
	ProtoICMPv6 = 58

	VXLANPort = 4789
)

type fieldKind uint8

const (
	kindInt fieldKind = iota
	kindPort
	kindMAC
	kindIPv4
	kindIPv6
)

type fieldInfo struct {
	name     string // ovs-ofctl name
	kind     fieldKind
	size     int    // bytes on the wire
	class    uint16 // OXM/NXM class we encode with
	field    uint8
	altClass uint16 // alternative encoding OVS may report (0 = none)
	altField uint8
	altSize  int
	maskable bool
}

const (
	oxmClassNXM0     = 0x0000
	oxmClassNXM1     = 0x0001
	oxmClassOpenflw  = 0x8000
	oxmClassEricsson = 0x1000 // ERICOXM_OF: nd_reserved, nd_options_type (OVS 2.11+)
)

var fieldInfos = [numFields]fieldInfo{
	FInPort:   {name: "in_port", kind: kindPort, size: 4, class: oxmClassOpenflw, field: 0, altClass: oxmClassNXM0, altField: 0, altSize: 2},
	FEthSrc:   {name: "dl_src", kind: kindMAC, size: 6, class: oxmClassOpenflw, field: 4, altClass: oxmClassNXM0, altField: 2, altSize: 6, maskable: true},
	FEthDst:   {name: "dl_dst", kind: kindMAC, size: 6, class: oxmClassOpenflw, field: 3, altClass: oxmClassNXM0, altField: 1, altSize: 6, maskable: true},
	FEthType:  {name: "dl_type", kind: kindInt, size: 2, class: oxmClassOpenflw, field: 5, altClass: oxmClassNXM0, altField: 3, altSize: 2},
	FVLANVID:  {name: "vlan_vid", kind: kindInt, size: 2, class: oxmClassOpenflw, field: 6, maskable: true},
	FIPProto:  {name: "nw_proto", kind: kindInt, size: 1, class: oxmClassOpenflw, field: 10, altClass: oxmClassNXM0, altField: 6, altSize: 1},
	FIPv4Src:  {name: "nw_src", kind: kindIPv4, size: 4, class: oxmClassOpenflw, field: 11, altClass: oxmClassNXM0, altField: 7, altSize: 4, maskable: true},
	FIPv4Dst:  {name: "nw_dst", kind: kindIPv4, size: 4, class: oxmClassOpenflw, field: 12, altClass: oxmClassNXM0, altField: 8, altSize: 4, maskable: true},
	FTCPSrc:   {name: "tcp_src", kind: kindInt, size: 2, class: oxmClassOpenflw, field: 13, altClass: oxmClassNXM0, altField: 9, altSize: 2},
	FTCPDst:   {name: "tcp_dst", kind: kindInt, size: 2, class: oxmClassOpenflw, field: 14, altClass: oxmClassNXM0, altField: 10, altSize: 2},
	FUDPSrc:   {name: "udp_src", kind: kindInt, size: 2, class: oxmClassOpenflw, field: 15, altClass: oxmClassNXM0, altField: 11, altSize: 2},
	FUDPDst:   {name: "udp_dst", kind: kindInt, size: 2, class: oxmClassOpenflw, field: 16, altClass: oxmClassNXM0, altField: 12, altSize: 2},
	FARPOp:    {name: "arp_op", kind: kindInt, size: 2, class: oxmClassOpenflw, field: 21, altClass: oxmClassNXM0, altField: 15, altSize: 2},
	FARPSpa:   {name: "arp_spa", kind: kindIPv4, size: 4, class: oxmClassOpenflw, field: 22, altClass: oxmClassNXM0, altField: 16, altSize: 4, maskable: true},
	FARPTpa:   {name: "arp_tpa", kind: kindIPv4, size: 4, class: oxmClassOpenflw, field: 23, altClass: oxmClassNXM0, altField: 17, altSize: 4, maskable: true},
	FARPSha:   {name: "arp_sha", kind: kindMAC, size: 6, class: oxmClassOpenflw, field: 24, altClass: oxmClassNXM1, altField: 17, altSize: 6},
	FARPTha:   {name: "arp_tha", kind: kindMAC, size: 6, class: oxmClassOpenflw, field: 25, altClass: oxmClassNXM1, altField: 18, altSize: 6},
	FTunID:    {name: "tun_id", kind: kindInt, size: 8, class: oxmClassOpenflw, field: 38, altClass: oxmClassNXM1, altField: 16, altSize: 8},
	FTunSrc:   {name: "tun_src", kind: kindIPv4, size: 4, class: oxmClassNXM1, field: 31, maskable: true},
	FTunDst:   {name: "tun_dst", kind: kindIPv4, size: 4, class: oxmClassNXM1, field: 32, maskable: true},
	FReg0:     {name: "reg0", kind: kindInt, size: 4, class: oxmClassNXM1, field: 0, maskable: true},
	FReg1:     {name: "reg1", kind: kindInt, size: 4, class: oxmClassNXM1, field: 1, maskable: true},
	FReg2:     {name: "reg2", kind: kindInt, size: 4, class: oxmClassNXM1, field: 2, maskable: true},
	FReg3:     {name: "reg3", kind: kindInt, size: 4, class: oxmClassNXM1, field: 3, maskable: true},
	FConjID:   {name: "conj_id", kind: kindInt, size: 4, class: oxmClassNXM1, field: 37},
	FICMPType: {name: "icmp_type", kind: kindInt, size: 1, class: oxmClassOpenflw, field: 19, altClass: oxmClassNXM0, altField: 13, altSize: 1},
	FICMPCode: {name: "icmp_code", kind: kindInt, size: 1, class: oxmClassOpenflw, field: 20, altClass: oxmClassNXM0, altField: 14, altSize: 1},
	FCtState:  {name: "ct_state", kind: kindInt, size: 4, class: oxmClassNXM1, field: 105, maskable: true},
	FCtZone:   {name: "ct_zone", kind: kindInt, size: 2, class: oxmClassNXM1, field: 106},
	FCtMark:   {name: "ct_mark", kind: kindInt, size: 4, class: oxmClassNXM1, field: 107, maskable: true},
	FReg4:     {name: "reg4", kind: kindInt, size: 4, class: oxmClassNXM1, field: 4, maskable: true},
	FReg5:     {name: "reg5", kind: kindInt, size: 4, class: oxmClassNXM1, field: 5, maskable: true},
	FReg6:     {name: "reg6", kind: kindInt, size: 4, class: oxmClassNXM1, field: 6, maskable: true},
	FReg7:     {name: "reg7", kind: kindInt, size: 4, class: oxmClassNXM1, field: 7, maskable: true},

	FIPv6Src:       {name: "ipv6_src", kind: kindIPv6, size: 16, class: oxmClassOpenflw, field: 26, altClass: oxmClassNXM1, altField: 19, altSize: 16, maskable: true},
	FIPv6Dst:       {name: "ipv6_dst", kind: kindIPv6, size: 16, class: oxmClassOpenflw, field: 27, altClass: oxmClassNXM1, altField: 20, altSize: 16, maskable: true},
	FICMPv6Type:    {name: "icmpv6_type", kind: kindInt, size: 1, class: oxmClassOpenflw, field: 29, altClass: oxmClassNXM1, altField: 21, altSize: 1},
	FNDTarget:      {name: "nd_target", kind: kindIPv6, size: 16, class: oxmClassOpenflw, field: 31, altClass: oxmClassNXM1, altField: 23, altSize: 16, maskable: true},
	FNDSll:         {name: "nd_sll", kind: kindMAC, size: 6, class: oxmClassOpenflw, field: 32, altClass: oxmClassNXM1, altField: 24, altSize: 6, maskable: true},
	FNDTll:         {name: "nd_tll", kind: kindMAC, size: 6, class: oxmClassOpenflw, field: 33, altClass: oxmClassNXM1, altField: 25, altSize: 6, maskable: true},
	FNDReserved:    {name: "nd_reserved", kind: kindInt, size: 4, class: oxmClassEricsson, field: 1},
	FNDOptionsType: {name: "nd_options_type", kind: kindInt, size: 1, class: oxmClassEricsson, field: 2},
}

func (f Field) info() *fieldInfo { return &fieldInfos[f] }

// String is the field's ovs-ofctl name.
func (f Field) String() string {
	if f == 0 || f >= numFields {
		return "unknown_field"
	}
	return f.info().name
}

// Bits is the field's width.
func (f Field) Bits() int { return f.info().size * 8 }

// fullMask is the all-ones mask of the field.
func (f Field) fullMask() uint64 {
	b := f.Bits()
	if b >= 64 {
		return ^uint64(0)
	}
	return 1<<uint(b) - 1
}

// lookupField maps an OXM/NXM class+field to our Field (both the encoding we
// send and the one OVS may report back).
func lookupField(class uint16, field uint8, size int) (Field, bool) {
	for f := FInPort; f < numFields; f++ {
		fi := f.info()
		if fi.class == class && fi.field == field && fi.size == size {
			return f, true
		}
		if fi.altSize != 0 && fi.altClass == class && fi.altField == field && fi.altSize == size {
			return f, true
		}
	}
	return 0, false
}
