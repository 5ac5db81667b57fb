package controller

// OpenFlow 1.3 wire constants, encoders and small decoders used by OFConn.
//
// Outgoing messages are built with github.com/contiv/libOpenflow's message
// types where they fit. Incoming messages are never handed to
// openflow13.Parse: every field we need is decoded here with explicit bounds
// checks (see DEPENDENCIES.md, bug 1).

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/contiv/libOpenflow/common"
	"github.com/contiv/libOpenflow/openflow13"
)

// OpenFlow 1.3 protocol version and framing limits.
const (
	OFVersion13    = openflow13.VERSION // wire version byte of OpenFlow 1.3 (0x04)
	ofHeaderLen    = 8
	ofMaxMsgLen    = 0xffff
	ofBundleAddHdr = 24 // header 8 + experimenter 4 + exp_type 4 + bundle_id 4 + pad 2 + flags 2
	// OFMaxBundleItem is the largest message Bundle can carry (it must fit
	// into one bundle-add message).
	OFMaxBundleItem = ofMaxMsgLen - ofBundleAddHdr
)

// OpenFlow 1.3 message types (ofp_type) used by OFConn.
const (
	OFPTHello           uint8 = openflow13.Type_Hello
	OFPTError           uint8 = openflow13.Type_Error
	OFPTEchoRequest     uint8 = openflow13.Type_EchoRequest
	OFPTEchoReply       uint8 = openflow13.Type_EchoReply
	OFPTExperimenter    uint8 = openflow13.Type_Experimenter
	OFPTFeaturesRequest uint8 = openflow13.Type_FeaturesRequest
	OFPTFeaturesReply   uint8 = openflow13.Type_FeaturesReply
	OFPTPacketIn        uint8 = openflow13.Type_PacketIn
	OFPTFlowRemoved     uint8 = openflow13.Type_FlowRemoved
	OFPTPortStatus      uint8 = openflow13.Type_PortStatus
	OFPTFlowMod         uint8 = openflow13.Type_FlowMod
	OFPTMultipartReq    uint8 = openflow13.Type_MultiPartRequest
	OFPTMultipartReply  uint8 = openflow13.Type_MultiPartReply
	OFPTBarrierRequest  uint8 = openflow13.Type_BarrierRequest
	OFPTBarrierReply    uint8 = openflow13.Type_BarrierReply
	OFPTRoleRequest     uint8 = openflow13.Type_RoleRequest
	OFPTRoleReply       uint8 = openflow13.Type_RoleReply
	OFPTRoleStatus14    uint8 = 30 // OpenFlow 1.4 OFPT_ROLE_STATUS
)

// Multipart types and flags.
const (
	OFPMPFlow       uint16 = openflow13.MultipartType_Flow     // 1
	OFPMPPortDesc   uint16 = openflow13.MultipartType_PortDesc // 13
	OFPMPFReplyMore uint16 = openflow13.OFPMPF_REPLY_MORE
)

// ONF experimenter extension constants (OpenFlow 1.3 bundles and role status).
const (
	ONFExperimenterID uint32 = openflow13.ONF_EXPERIMENTER_ID // 0x4f4e4600
	ONFETBundleCtrl   uint32 = openflow13.Type_BundleCtrl     // 2300
	ONFETBundleAdd    uint32 = openflow13.Type_BundleAdd      // 2301
	ONFETRoleStatus   uint32 = 1911
)

// Port numbers and reasons.
const (
	OFPPLocal uint32 = openflow13.P_LOCAL // 0xfffffffe
	OFPPAny   uint32 = openflow13.P_ANY

	ofpPRAdd    = 0
	ofpPRDelete = 1
	ofpPRModify = 2

	ofpPortLen = 64 // sizeof(struct ofp_port) in OpenFlow 1.3
)

// Error types (ofp_error_type) and the codes we name.
const (
	OFPETHelloFailed       uint16 = openflow13.ET_HELLO_FAILED
	OFPETBadRequest        uint16 = openflow13.ET_BAD_REQUEST
	OFPETBadAction         uint16 = openflow13.ET_BAD_ACTION
	OFPETBadInstruction    uint16 = openflow13.ET_BAD_INSTRUCTION
	OFPETBadMatch          uint16 = openflow13.PET_BAD_MATCH
	OFPETFlowModFailed     uint16 = openflow13.ET_FLOW_MOD_FAILED
	OFPETGroupModFailed    uint16 = openflow13.ET_GROUP_MOD_FAILED
	OFPETRoleRequestFailed uint16 = openflow13.ET_ROLE_REQUEST_FAILED
	OFPETExperimenter      uint16 = openflow13.ET_EXPERIMENTER

	OFPHFCIncompatible uint16 = openflow13.HFC_INCOMPATIBLE
	OFPBRCIsSlave      uint16 = openflow13.BRC_IS_SLAVE
	OFPRRFCStale       uint16 = 0
)

// ErrStaleGeneration is matched (errors.Is) by the error RequestRole returns
// when the switch refused a MASTER/SLAVE claim because its generation id is
// older than one the switch has already seen (OFPET_ROLE_REQUEST_FAILED /
// OFPRRFC_STALE). The caller must pick a higher generation id.
var ErrStaleGeneration = errors.New("openflow: role request refused: stale generation id (OFPRRFC_STALE)")

// ErrIsSlave is matched (errors.Is) by errors caused by the switch refusing a
// write because this connection is SLAVE (OFPET_BAD_REQUEST / OFPBRC_IS_SLAVE).
var ErrIsSlave = errors.New("openflow: switch refused a write: this controller is SLAVE (OFPBRC_IS_SLAVE)")

// OFError is an OFPT_ERROR the switch sent in reply to one of our requests.
type OFError struct {
	Op           string // what we were doing: "bundle add", "bundle commit", "flow-mod", "role request", ...
	Index        int    // index of the failing message in the caller's slice, -1 when not a caller message
	Xid          uint32
	Type         uint16 // ofp_error_type; OFPETExperimenter for experimenter errors
	Code         uint16 // code, or exp_code for experimenter errors
	Experimenter uint32 // experimenter id when Type == OFPETExperimenter
	Data         []byte // the (truncated) offending request, as sent back by the switch
}

// Name returns "OFPET_X/OFPYYY_Z" for the error, with numbers for unknown codes.
func (e *OFError) Name() string { return ofErrorName(e.Type, e.Code, e.Experimenter) }

func (e *OFError) Error() string {
	where := e.Op
	if e.Index >= 0 {
		where = fmt.Sprintf("%s (message index %d)", e.Op, e.Index)
	}
	return fmt.Sprintf("openflow: switch rejected %s: %s (type %d, code %d, xid %d)", where, e.Name(), e.Type, e.Code, e.Xid)
}

// Is makes errors.Is(err, ErrStaleGeneration) and errors.Is(err, ErrIsSlave) work.
func (e *OFError) Is(target error) bool {
	switch target {
	case ErrStaleGeneration:
		return e.Type == OFPETRoleRequestFailed && e.Code == OFPRRFCStale
	case ErrIsSlave:
		return e.Type == OFPETBadRequest && e.Code == OFPBRCIsSlave
	}
	return false
}

var ofErrTypeNames = map[uint16]string{
	0: "OFPET_HELLO_FAILED", 1: "OFPET_BAD_REQUEST", 2: "OFPET_BAD_ACTION", 3: "OFPET_BAD_INSTRUCTION",
	4: "OFPET_BAD_MATCH", 5: "OFPET_FLOW_MOD_FAILED", 6: "OFPET_GROUP_MOD_FAILED", 7: "OFPET_PORT_MOD_FAILED",
	8: "OFPET_TABLE_MOD_FAILED", 9: "OFPET_QUEUE_OP_FAILED", 10: "OFPET_SWITCH_CONFIG_FAILED",
	11: "OFPET_ROLE_REQUEST_FAILED", 12: "OFPET_METER_MOD_FAILED", 13: "OFPET_TABLE_FEATURES_FAILED",
	0xffff: "OFPET_EXPERIMENTER",
}

var ofErrCodeNames = map[uint16][]string{
	0: {"OFPHFC_INCOMPATIBLE", "OFPHFC_EPERM"},
	1: {"OFPBRC_BAD_VERSION", "OFPBRC_BAD_TYPE", "OFPBRC_BAD_MULTIPART", "OFPBRC_BAD_EXPERIMENTER",
		"OFPBRC_BAD_EXP_TYPE", "OFPBRC_EPERM", "OFPBRC_BAD_LEN", "OFPBRC_BUFFER_EMPTY", "OFPBRC_BUFFER_UNKNOWN",
		"OFPBRC_BAD_TABLE_ID", "OFPBRC_IS_SLAVE", "OFPBRC_BAD_PORT", "OFPBRC_BAD_PACKET",
		"OFPBRC_MULTIPART_BUFFER_OVERFLOW"},
	2: {"OFPBAC_BAD_TYPE", "OFPBAC_BAD_LEN", "OFPBAC_BAD_EXPERIMENTER", "OFPBAC_BAD_EXP_TYPE",
		"OFPBAC_BAD_OUT_PORT", "OFPBAC_BAD_ARGUMENT", "OFPBAC_EPERM", "OFPBAC_TOO_MANY", "OFPBAC_BAD_QUEUE",
		"OFPBAC_BAD_OUT_GROUP", "OFPBAC_MATCH_INCONSISTENT", "OFPBAC_UNSUPPORTED_ORDER", "OFPBAC_BAD_TAG",
		"OFPBAC_BAD_SET_TYPE", "OFPBAC_BAD_SET_LEN", "OFPBAC_BAD_SET_ARGUMENT"},
	3: {"OFPBIC_UNKNOWN_INST", "OFPBIC_UNSUP_INST", "OFPBIC_BAD_TABLE_ID", "OFPBIC_UNSUP_METADATA",
		"OFPBIC_UNSUP_METADATA_MASK", "OFPBIC_BAD_EXPERIMENTER", "OFPBIC_BAD_EXP_TYPE", "OFPBIC_BAD_LEN",
		"OFPBIC_EPERM"},
	4: {"OFPBMC_BAD_TYPE", "OFPBMC_BAD_LEN", "OFPBMC_BAD_TAG", "OFPBMC_BAD_DL_ADDR_MASK",
		"OFPBMC_BAD_NW_ADDR_MASK", "OFPBMC_BAD_WILDCARDS", "OFPBMC_BAD_FIELD", "OFPBMC_BAD_VALUE",
		"OFPBMC_BAD_MASK", "OFPBMC_BAD_PREREQ", "OFPBMC_DUP_FIELD", "OFPBMC_EPERM"},
	5: {"OFPFMFC_UNKNOWN", "OFPFMFC_TABLE_FULL", "OFPFMFC_BAD_TABLE_ID", "OFPFMFC_OVERLAP", "OFPFMFC_EPERM",
		"OFPFMFC_BAD_TIMEOUT", "OFPFMFC_BAD_COMMAND", "OFPFMFC_BAD_FLAGS"},
	6: {"OFPGMFC_GROUP_EXISTS", "OFPGMFC_INVALID_GROUP", "OFPGMFC_WEIGHT_UNSUPPORTED", "OFPGMFC_OUT_OF_GROUPS",
		"OFPGMFC_OUT_OF_BUCKETS", "OFPGMFC_CHAINING_UNSUPPORTED", "OFPGMFC_WATCH_UNSUPPORTED", "OFPGMFC_LOOP",
		"OFPGMFC_UNKNOWN_GROUP", "OFPGMFC_CHAINED_GROUP", "OFPGMFC_BAD_TYPE", "OFPGMFC_BAD_COMMAND",
		"OFPGMFC_BAD_BUCKET", "OFPGMFC_BAD_WATCH", "OFPGMFC_EPERM"},
	11: {"OFPRRFC_STALE", "OFPRRFC_UNSUP", "OFPRRFC_BAD_ROLE"},
}

var ofBundleErrNames = []string{
	"BEC_UNKNOWN", "BEC_EPERM", "BEC_BAD_ID", "BEC_BUNDLE_EXIST", "BEC_BUNDLE_CLOSED", "BEC_OUT_OF_BUNDLES",
	"BEC_BAD_TYPE", "BEC_BAD_FLAGS", "BEC_MSG_BAD_LEN", "BEC_MSG_BAD_XID", "BEC_MSG_UNSUP", "BEC_MSG_CONFLICT",
	"BEC_MSG_TOO_MANY", "BEC_MSG_FAILED", "BEC_TIMEOUT", "BEC_BUNDLE_IN_PROGRESS",
}

// ofErrorName decodes an error type/code into OpenFlow's symbolic names.
func ofErrorName(typ, code uint16, experimenter uint32) string {
	if typ == OFPETExperimenter {
		if experimenter == ONFExperimenterID && code >= 2300 && int(code-2300) < len(ofBundleErrNames) {
			return "OFPET_EXPERIMENTER/ONF " + ofBundleErrNames[code-2300]
		}
		return fmt.Sprintf("OFPET_EXPERIMENTER/experimenter 0x%08x code %d", experimenter, code)
	}
	tn, ok := ofErrTypeNames[typ]
	if !ok {
		tn = fmt.Sprintf("OFPET_%d", typ)
	}
	if names := ofErrCodeNames[typ]; int(code) < len(names) {
		return tn + "/" + names[code]
	}
	return fmt.Sprintf("%s/code %d", tn, code)
}

// ofParseError decodes an OFPT_ERROR message body (msg includes the header).
func ofParseError(msg []byte) (*OFError, error) {
	if len(msg) < 12 {
		return nil, fmt.Errorf("OFPT_ERROR too short: %d bytes", len(msg))
	}
	e := &OFError{Index: -1, Xid: binary.BigEndian.Uint32(msg[4:8])}
	e.Type = binary.BigEndian.Uint16(msg[8:10])
	e.Code = binary.BigEndian.Uint16(msg[10:12])
	data := msg[12:]
	if e.Type == OFPETExperimenter {
		if len(msg) < 16 {
			return nil, fmt.Errorf("experimenter OFPT_ERROR too short: %d bytes", len(msg))
		}
		e.Experimenter = binary.BigEndian.Uint32(msg[12:16])
		data = msg[16:]
	}
	e.Data = append([]byte(nil), data...)
	return e, nil
}

// ofHeader is the decoded 8-byte OpenFlow header.
type ofHeader struct {
	Version uint8
	Type    uint8
	Length  uint16
	Xid     uint32
}

func ofDecodeHeader(b []byte) ofHeader {
	return ofHeader{Version: b[0], Type: b[1], Length: binary.BigEndian.Uint16(b[2:4]), Xid: binary.BigEndian.Uint32(b[4:8])}
}

// ofMarshal marshals a libOpenflow message and stamps the xid.
func ofMarshal(m interface{ MarshalBinary() ([]byte, error) }, xid uint32) ([]byte, error) {
	b, err := m.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if len(b) < ofHeaderLen {
		return nil, fmt.Errorf("openflow: encoder produced %d bytes", len(b))
	}
	binary.BigEndian.PutUint32(b[4:8], xid)
	return b, nil
}

// ofSimple builds a header-only (or header+payload) message of the given type.
func ofSimple(typ uint8, xid uint32, payload []byte) []byte {
	h := common.Header{Version: OFVersion13, Type: typ, Length: uint16(ofHeaderLen + len(payload)), Xid: xid}
	b, _ := h.MarshalBinary() // cannot fail
	return append(b, payload...)
}

// ofHelloMsg is our HELLO: version 1.3 with a version bitmap that only
// offers 1.3.
func ofHelloMsg(xid uint32) []byte {
	h, _ := common.NewHello(OFVersion13) // cannot fail
	bm := common.NewHelloElemVersionBitmap()
	bm.Bitmaps = []uint32{1 << OFVersion13}
	h.Elements = []common.HelloElem{bm}
	b, _ := ofMarshal(h, xid)
	return b
}

// ofErrorMsg builds an OFPT_ERROR with the given type/code and data.
func ofErrorMsg(xid uint32, typ, code uint16, data []byte) []byte {
	p := make([]byte, 4, 4+len(data))
	binary.BigEndian.PutUint16(p[0:2], typ)
	binary.BigEndian.PutUint16(p[2:4], code)
	return ofSimple(OFPTError, xid, append(p, data...))
}

// ofMultipartRequest builds an OFPT_MULTIPART_REQUEST with a raw body.
func ofMultipartRequest(xid uint32, mpType uint16, body []byte) []byte {
	p := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint16(p[0:2], mpType)
	return ofSimple(OFPTMultipartReq, xid, append(p, body...))
}

// ofFlowStatsAllBody is ofp_flow_stats_request for every flow of every table.
func ofFlowStatsAllBody() []byte {
	r := openflow13.NewFlowStatsRequest()
	r.TableId = openflow13.OFPTT_ALL
	r.OutPort = OFPPAny
	r.OutGroup = openflow13.OFPG_ANY
	b, _ := r.MarshalBinary() // 32 bytes + empty OXM match (8)
	return b
}

// ofFlowStatsCookieBody is ofp_flow_stats_request for the flows of every
// table whose cookie matches cookie under mask.
func ofFlowStatsCookieBody(cookie, mask uint64) []byte {
	r := openflow13.NewFlowStatsRequest()
	r.TableId = openflow13.OFPTT_ALL
	r.OutPort = OFPPAny
	r.OutGroup = openflow13.OFPG_ANY
	r.Cookie, r.CookieMask = cookie, mask
	b, _ := r.MarshalBinary()
	return b
}

// ofRoleRequestMsg builds the 24-byte OFPT_ROLE_REQUEST.
func ofRoleRequestMsg(xid uint32, role OFRole, gen uint64) []byte {
	p := make([]byte, 16)
	binary.BigEndian.PutUint32(p[0:4], uint32(role))
	binary.BigEndian.PutUint64(p[8:16], gen)
	return ofSimple(OFPTRoleRequest, xid, p)
}

// ofBundleCtrlMsg builds an ONF bundle control message (OpenFlow 1.3 extension).
func ofBundleCtrlMsg(xid, bundleID uint32, ctrlType, flags uint16) []byte {
	m := openflow13.NewBundleControl(&openflow13.BundleControl{BundleID: bundleID, Type: ctrlType, Flags: flags})
	b, _ := ofMarshal(m, xid)
	return b
}

// ofRawMessage adapts an already encoded message to libOpenflow's util.Message.
type ofRawMessage []byte

func (r ofRawMessage) Len() uint16                     { return uint16(len(r)) }
func (r ofRawMessage) MarshalBinary() ([]byte, error)  { return []byte(r), nil }
func (r *ofRawMessage) UnmarshalBinary(b []byte) error { *r = append((*r)[:0], b...); return nil }

// ofBundleAddMsg wraps an inner message (whose xid was already set to xid)
// into an ONF bundle add message with the same xid.
func ofBundleAddMsg(xid, bundleID uint32, flags uint16, inner []byte) ([]byte, error) {
	raw := ofRawMessage(inner)
	m := openflow13.NewBundleAdd(&openflow13.BundleAdd{BundleID: bundleID, Flags: flags, Message: &raw})
	return ofMarshal(m, xid)
}

// ofPortName returns the NUL-terminated name from an ofp_port's 16-byte name field.
func ofPortName(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
