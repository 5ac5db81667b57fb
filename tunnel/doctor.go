package tunnel

// vpcflow doctor: read-only host checks against the field's known fault
// lines (DESIGN §7). Every check is a function over a DoctorEnv (files under
// /sys and /proc, commands, interface addresses, the kernel datapath probe,
// HTTP and one OVSDB snapshot), so each PASS/WARN/FAIL path is unit-tested
// with fake inputs; SystemEnv is the real host.

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vpcflow/vpcflow/flows"
)

// CheckStatus is the verdict of one doctor check.
type CheckStatus string

// Check verdicts. WARN does not fail the doctor; SKIP means the check could
// not be evaluated because an earlier one failed or an input is missing.
const (
	StatusPass CheckStatus = "PASS"
	StatusWarn CheckStatus = "WARN"
	StatusFail CheckStatus = "FAIL"
	StatusSkip CheckStatus = "SKIP"
)

// Names of the doctor checks, in the order Doctor reports them. The list is
// stable: every run reports every check (SKIP when it cannot be evaluated).
const (
	CheckOVSDB               = "ovsdb-server"
	CheckVSwitchd            = "ovs-vswitchd"
	CheckOVSVersion          = "ovs-version"
	CheckDatapath            = "datapath"
	CheckBridge              = "bridge"
	CheckNetworkManager      = "network-manager"
	CheckFailMode            = "fail-mode"
	CheckProtocols           = "protocols"
	CheckDatapathID          = "datapath-id"
	CheckControllerTargets   = "controller-targets"
	CheckControllerTLS       = "controller-tls"
	CheckControllerConnected = "controller-connected"
	CheckConnectionMode      = "connection-mode"
	CheckOVSDBListen         = "ovsdb-listen"
	CheckMTU                 = "mtu"
	CheckBond                = "uplink-bond"
	CheckTunnelIP            = "tunnel-ip"
	CheckTunnelPort          = "tunnel-port"
	CheckControllerStatus    = "controller-status"
)

// DoctorChecks lists every check name in report order.
var DoctorChecks = []string{
	CheckOVSDB, CheckVSwitchd, CheckOVSVersion, CheckDatapath, CheckBridge,
	CheckNetworkManager, CheckFailMode, CheckProtocols, CheckDatapathID,
	CheckControllerTargets, CheckControllerTLS, CheckControllerConnected,
	CheckConnectionMode, CheckOVSDBListen, CheckMTU, CheckBond, CheckTunnelIP,
	CheckTunnelPort, CheckControllerStatus,
}

// Encapsulation overheads on the underlay, in bytes, for a 1500-byte guest
// frame: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14); outer
// IPv4 (20) + GRE with key (8) + inner Ethernet (14). An 802.1Q-tagged
// underlay adds VLANOverhead on the wire.
const (
	VXLANOverhead  = 50
	GREOverhead    = 42
	GRENoKeyOverhd = 38
	VLANOverhead   = 4
	// DefaultGuestMTU is the guest MTU the uplink must carry encapsulated.
	DefaultGuestMTU = 1500
	// DefaultControllerURL is the controller status API doctor tries when
	// no --controller-url is given (only if it answers).
	DefaultControllerURL = "http://127.0.0.1:9653"
	// DefaultDoctorWait bounds the polls for values OVS writes lazily
	// (cur_cfg, Controller.is_connected lags ~5 s).
	DefaultDoctorWait = 6 * time.Second
)

// CheckResult is one line of the doctor's report.
type CheckResult struct {
	Check       string      `json:"check"`
	Status      CheckStatus `json:"status"`
	Detail      string      `json:"detail"`
	Remediation string      `json:"remediation"`
}

// DoctorExitCode is the process exit code for a report: 1 when any check
// failed, else 0 (warnings and skips allowed).
func DoctorExitCode(results []CheckResult) int {
	for _, r := range results {
		if r.Status == StatusFail {
			return 1
		}
	}
	return 0
}

// OVSDBState is the part of a host's Open_vSwitch database doctor reads, in
// one read-only transaction.
type OVSDBState struct {
	OVSVersion string
	CurCfg     int
	NextCfg    int
	// Managers are the rows referenced by Open_vSwitch.manager_options.
	Managers []ManagerState
	// SSL is the Open_vSwitch.ssl row (nil when set-ssl was never run).
	SSL *SSLState
	// Bridges names every bridge of the database.
	Bridges []string
	// Bridge is the examined bridge (nil when it does not exist).
	Bridge *BridgeState
}

// ManagerState is a Manager row.
type ManagerState struct {
	Target      string
	IsConnected bool
}

// SSLState is the SSL row (file names set with ovs-vsctl set-ssl).
type SSLState struct {
	PrivateKey, Certificate, CACert string
}

// BridgeState is the examined Bridge row with its ports and controllers.
type BridgeState struct {
	Name         string
	DatapathType string // "" = system
	DatapathID   string // the datapath_id column ovs-vswitchd writes
	FailMode     string // "" = unset (standalone)
	Protocols    []string
	OtherConfig  map[string]string
	Ports        []PortState
	Controllers  []ControllerState
}

// PortState is a Port row with its interfaces (the bond columns are empty
// for a single-interface port).
type PortState struct {
	Name       string
	Tag        *int
	Interfaces []InterfaceState
	BondMode   string // "" = unset
	LACP       string // "" = unset (off)
	BondActive string // bond_active_slave: the MAC of the bond's active member (ovs-vswitchd's own choice)
}

// InterfaceState is an Interface row.
type InterfaceState struct {
	Name        string
	Type        string
	Options     map[string]string
	Ofport      *int
	Error       string
	LinkState   string // "up", "down" or "" (not reported)
	LACPCurrent *bool  // LACP: the partner's PDUs are current (nil without LACP)
}

// ControllerState is a Controller row.
type ControllerState struct {
	Target         string
	ConnectionMode string // "" = unset (in-band)
	IsConnected    bool
	Role           string
}

// DoctorEnv is everything the checks read from the host. SystemEnv is the
// real implementation; tests substitute fakes.
type DoctorEnv interface {
	// ReadFile reads a file (/sys, /proc, pidfiles).
	ReadFile(path string) ([]byte, error)
	// ReadDir lists the names in a directory; an error when it is missing.
	ReadDir(path string) ([]string, error)
	// Readlink reads a symbolic link (/proc/PID/fd/N).
	Readlink(path string) (string, error)
	// Run runs a command with extra environment variables and returns its
	// standard output; exec.ErrNotFound (wrapped) when it is not installed.
	Run(ctx context.Context, env []string, name string, args ...string) (string, error)
	// InterfaceAddrs lists the addresses on a network interface.
	InterfaceAddrs(name string) ([]netip.Prefix, error)
	// KernelDatapaths probes the OVS kernel datapath (generic netlink family
	// ovs_datapath) and lists its datapaths; an error satisfying
	// os.IsNotExist when the family is not registered.
	KernelDatapaths() ([]string, error)
	// HTTPGet fetches a URL and returns the body of a 200 answer.
	HTTPGet(ctx context.Context, url string) ([]byte, error)
	// ReadOVSDB reads the database state around bridge at endpoint.
	ReadOVSDB(ctx context.Context, endpoint, bridge string) (*OVSDBState, error)
}

// DoctorOptions say what doctor examines.
type DoctorOptions struct {
	// Endpoint is the ovsdb-server to read (default DefaultEndpoint()).
	Endpoint string
	// Bridge is the bridge to examine (default cloudbr0).
	Bridge string
	// Blueprint and Host, when set, add the blueprint's expectations:
	// datapath id, tunnel IP, uplink, encapsulation, controller targets and
	// management CIDRs. Host must be validated (flows.Load does it).
	Blueprint *flows.Blueprint
	Host      *flows.Host
	// Uplink overrides the host's uplink (default: the blueprint's, else the
	// bridge's only system port that is not a VM port).
	Uplink string
	// GuestMTU is the guest MTU the uplink must carry (default 1500).
	GuestMTU int
	// RunDir holds the OVS pidfiles (default $OVS_RUNDIR, else the directory
	// of a unix: endpoint, else /var/run/openvswitch).
	RunDir string
	// ControllerURL is the controller's status API. When ControllerURLSet is
	// false an unreachable URL skips the check instead of failing it.
	ControllerURL    string
	ControllerURLSet bool
	// Wait bounds the polls for lazily written OVS columns (default
	// DefaultDoctorWait; negative = no polling).
	Wait time.Duration
	// Env is the host (default SystemEnv{}).
	Env DoctorEnv
}

// doctor is one run's state.
type doctor struct {
	o        DoctorOptions
	env      DoctorEnv
	db       *OVSDBState
	dbErr    error
	br       *BridgeState
	bridge   string
	uplink   string
	encap    flows.Encapsulation
	results  []CheckResult
	mgmtNets []netip.Prefix
}

// Doctor runs every check and returns one result per name in DoctorChecks,
// in that order. It never changes anything on the host.
func Doctor(ctx context.Context, o DoctorOptions) []CheckResult {
	if o.Env == nil {
		o.Env = SystemEnv{}
	}
	if o.Bridge == "" {
		o.Bridge = DefaultBridge
	}
	if o.Endpoint == "" {
		o.Endpoint = DefaultEndpoint()
	}
	if o.GuestMTU <= 0 {
		o.GuestMTU = DefaultGuestMTU
	}
	if o.Wait == 0 {
		o.Wait = DefaultDoctorWait
	}
	if o.RunDir == "" {
		o.RunDir = defaultRunDir(o.Endpoint)
	}
	if o.ControllerURL == "" {
		o.ControllerURL = DefaultControllerURL
	}
	d := &doctor{o: o, env: o.Env, bridge: o.Bridge}
	if o.Blueprint != nil {
		d.mgmtNets = o.Blueprint.MgmtPrefixes
		if len(d.mgmtNets) == 0 {
			for _, c := range o.Blueprint.Management.CIDRs {
				if p, err := netip.ParsePrefix(c); err == nil {
					d.mgmtNets = append(d.mgmtNets, p.Masked())
				}
			}
		}
	}
	d.db, d.dbErr = o.Env.ReadOVSDB(ctx, o.Endpoint, o.Bridge)
	if d.db != nil {
		d.br = d.db.Bridge
	}
	d.uplink = d.findUplink()
	d.encap = d.findEncap()

	d.add(d.checkOVSDB())
	d.add(d.checkVSwitchd(ctx))
	d.add(d.checkVersion(ctx))
	d.add(d.checkDatapath())
	d.add(d.checkBridge())
	d.add(d.checkNetworkManager(ctx))
	d.add(d.checkFailMode())
	d.add(d.checkProtocols())
	d.add(d.checkDatapathID())
	d.add(d.checkControllerTargets())
	d.add(d.checkControllerTLS())
	d.add(d.checkControllerConnected(ctx))
	d.add(d.checkConnectionMode())
	d.add(d.checkOVSDBListen(ctx))
	d.add(d.checkMTU())
	d.add(d.checkBond())
	d.add(d.checkTunnelIP())
	d.add(d.checkTunnelPort())
	d.add(d.checkControllerStatus(ctx))
	return d.results
}

func (d *doctor) add(r CheckResult) { d.results = append(d.results, r) }

func pass(check, detail string) CheckResult {
	return CheckResult{Check: check, Status: StatusPass, Detail: detail}
}

func warn(check, detail, fix string) CheckResult {
	return CheckResult{Check: check, Status: StatusWarn, Detail: detail, Remediation: fix}
}

func fail(check, detail, fix string) CheckResult {
	return CheckResult{Check: check, Status: StatusFail, Detail: detail, Remediation: fix}
}

func skip(check, detail string) CheckResult {
	return CheckResult{Check: check, Status: StatusSkip, Detail: detail}
}

// defaultRunDir is $OVS_RUNDIR, else a unix: endpoint's directory, else
// /var/run/openvswitch.
func defaultRunDir(endpoint string) string {
	if d := os.Getenv("OVS_RUNDIR"); d != "" {
		return d
	}
	if p, ok := strings.CutPrefix(endpoint, "unix:"); ok && p != "" {
		return filepath.Dir(p)
	}
	return "/var/run/openvswitch"
}

// needDB returns a SKIP result when the database could not be read.
func (d *doctor) needDB(check string) (CheckResult, bool) {
	if d.db == nil {
		return skip(check, "ovsdb-server not readable (see "+CheckOVSDB+")"), false
	}
	return CheckResult{}, true
}

// needBridge returns a SKIP result when the bridge is missing.
func (d *doctor) needBridge(check string) (CheckResult, bool) {
	if r, ok := d.needDB(check); !ok {
		return r, false
	}
	if d.br == nil {
		return skip(check, "bridge "+d.bridge+" does not exist in OVSDB (see "+CheckBridge+")"), false
	}
	return CheckResult{}, true
}

func (d *doctor) hostSuffix() string {
	if d.o.Host != nil {
		return " --blueprint FILE --host " + d.o.Host.Name
	}
	return " --blueprint FILE --host NAME"
}

// findUplink: --uplink > the host's uplink > the bridge's only system port
// that looks like a NIC.
func (d *doctor) findUplink() string {
	if d.o.Uplink != "" {
		return d.o.Uplink
	}
	if d.o.Host != nil && d.o.Host.Uplink != "" {
		return d.o.Host.Uplink
	}
	if d.br == nil {
		return ""
	}
	var cands []string
	for _, p := range d.br.Ports {
		if p.Name == d.bridge || len(p.Interfaces) != 1 {
			continue
		}
		i := p.Interfaces[0]
		if i.Type != "" && i.Type != "system" {
			continue
		}
		if strings.HasPrefix(p.Name, "vnet") || strings.HasPrefix(p.Name, "tap") || strings.HasPrefix(p.Name, "vif") {
			continue
		}
		cands = append(cands, p.Name)
	}
	if len(cands) == 1 {
		return cands[0]
	}
	return ""
}

// findEncap: the blueprint's encapsulation, else the vpcflow tunnel port
// present on the bridge, else "" (unknown).
func (d *doctor) findEncap() flows.Encapsulation {
	if d.o.Blueprint != nil {
		if d.o.Blueprint.Encapsulation == "" {
			return flows.EncapVXLAN
		}
		return d.o.Blueprint.Encapsulation
	}
	if d.br != nil {
		for _, p := range d.br.Ports {
			switch p.Name {
			case TunnelPortName(flows.EncapVXLAN):
				return flows.EncapVXLAN
			case TunnelPortName(flows.EncapGRE):
				return flows.EncapGRE
			}
		}
	}
	return ""
}

// TunnelPortName is the name host apply gives the tunnel port of an
// encapsulation: vpcflow-vxlan or vpcflow-gre.
func TunnelPortName(e flows.Encapsulation) string {
	if e == flows.EncapGRE {
		return "vpcflow-gre"
	}
	return "vpcflow-vxlan"
}

// EncapOverhead is the underlay bytes an encapsulation adds to a guest
// frame (GRE with a key, as vpcflow uses).
func EncapOverhead(e flows.Encapsulation) int {
	if e == flows.EncapGRE {
		return GREOverhead
	}
	return VXLANOverhead
}
