package tunnel

// vpcflow doctor: read-only host checks against the field's known fault
// lines (DESIGN §7). Every check is a function over a DoctorEnv (files under
// /sys and /proc, commands, interface addresses, the kernel datapath probe,
// HTTP and one OVSDB snapshot), so each PASS/WARN/FAIL path is unit-tested
// with fake inputs; SystemEnv is the real host.

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/digitalocean/go-openvswitch/ovsnl"
	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"

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

// 1. Open vSwitch running.

func (d *doctor) checkOVSDB() CheckResult {
	if d.dbErr != nil {
		detail := d.dbErr.Error()
		if !strings.Contains(detail, d.o.Endpoint) {
			detail = fmt.Sprintf("cannot read ovsdb-server at %s: %s", d.o.Endpoint, detail)
		}
		return fail(CheckOVSDB, detail,
			"start Open vSwitch (systemctl start openvswitch-switch / ovs-ctl start) or pass the right --ovsdb endpoint")
	}
	return pass(CheckOVSDB, "ovsdb-server answers at "+d.o.Endpoint)
}

// pidAlive reads a pidfile and reports the pid when that process runs the
// named program.
func (d *doctor) pidAlive(pidfile, comm string) (int, error) {
	b, err := d.env.ReadFile(pidfile)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pidfile %s holds %q, not a pid", pidfile, strings.TrimSpace(string(b)))
	}
	c, err := d.env.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return pid, fmt.Errorf("process %d from %s is not running", pid, pidfile)
	}
	if got := strings.TrimSpace(string(c)); comm != "" && !strings.HasPrefix(comm, got) {
		return pid, fmt.Errorf("process %d from %s is %q, not %s (stale pidfile)", pid, pidfile, got, comm)
	}
	return pid, nil
}

func (d *doctor) checkVSwitchd(ctx context.Context) CheckResult {
	pidfile := filepath.Join(d.o.RunDir, "ovs-vswitchd.pid")
	pid, perr := d.pidAlive(pidfile, "ovs-vswitchd")
	if perr == nil {
		return pass(CheckVSwitchd, fmt.Sprintf("ovs-vswitchd runs (pid %d)", pid))
	}
	fix := "start ovs-vswitchd (systemctl start openvswitch-switch / ovs-ctl start); with it stopped nothing forwards"
	if d.db == nil {
		return fail(CheckVSwitchd, fmt.Sprintf("cannot confirm ovs-vswitchd: %v and the database is unreadable", perr), fix)
	}
	// Without a live pidfile, ovs-vswitchd acknowledges each database change
	// by copying next_cfg to cur_cfg: poll briefly for it.
	st := d.db
	deadline := time.Now().Add(min(d.o.Wait, 2*time.Second))
	for st.CurCfg < st.NextCfg && d.o.Wait > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			deadline = time.Now()
		case <-time.After(200 * time.Millisecond):
		}
		if s, err := d.env.ReadOVSDB(ctx, d.o.Endpoint, d.bridge); err == nil {
			st = s
		}
	}
	if st.CurCfg < st.NextCfg {
		return fail(CheckVSwitchd, fmt.Sprintf("ovs-vswitchd is not applying the database (cur_cfg %d behind next_cfg %d) and %v", st.CurCfg, st.NextCfg, perr), fix)
	}
	if strings.HasPrefix(d.o.Endpoint, "unix:") {
		// Local database but no live daemon: cur_cfg == next_cfg only says
		// nothing changed since it stopped.
		return fail(CheckVSwitchd, fmt.Sprintf("ovs-vswitchd is not running: %v", perr), fix)
	}
	return warn(CheckVSwitchd, fmt.Sprintf("remote database up to date (cur_cfg %d == next_cfg), but the pidfile is not readable here (%v)", st.CurCfg, perr),
		"run vpcflow doctor on the hypervisor itself to confirm ovs-vswitchd")
}

func (d *doctor) checkVersion(ctx context.Context) CheckResult {
	if r, ok := d.needDB(CheckOVSVersion); !ok {
		return r
	}
	if d.db.OVSVersion != "" {
		return pass(CheckOVSVersion, "Open vSwitch "+d.db.OVSVersion)
	}
	// The distribution's startup script records ovs_version; a hand-started
	// ovs-vswitchd does not. Ask the binary instead.
	out, err := d.env.Run(ctx, nil, "ovs-vswitchd", "--version")
	if v := parseOVSVersion(out); err == nil && v != "" {
		return pass(CheckOVSVersion, "Open vSwitch "+v+" (ovs-vswitchd --version; Open_vSwitch.ovs_version is not recorded)")
	}
	return warn(CheckOVSVersion, "Open vSwitch version unknown: Open_vSwitch.ovs_version is empty and ovs-vswitchd --version failed",
		"start Open vSwitch with its startup script (ovs-ctl start records ovs_version), or check the installation")
}

// parseOVSVersion takes the version from `ovs-vswitchd --version`'s first
// line, "ovs-vswitchd (Open vSwitch) 3.1.0".
func parseOVSVersion(out string) string {
	line, _, _ := strings.Cut(out, "\n")
	if _, v, ok := strings.Cut(line, "(Open vSwitch) "); ok {
		return strings.TrimSpace(v)
	}
	return ""
}

// 2. Datapath.

func (d *doctor) checkDatapath() CheckResult {
	dps, kerr := d.env.KernelDatapaths()
	kernel := kerr == nil
	dpType := ""
	if d.br != nil {
		dpType = d.br.DatapathType
		if dpType == "" {
			dpType = "system"
		}
	}
	bridgeNote := ""
	if dpType != "" {
		bridgeNote = fmt.Sprintf("; %s datapath_type=%s", d.bridge, dpType)
	}
	switch {
	case kernel && dpType == "netdev":
		return warn(CheckDatapath, "kernel datapath available (ovs_datapath) but "+d.bridge+" uses datapath_type=netdev (userspace, slower)",
			"recreate the bridge with datapath_type=system in a maintenance window for kernel-datapath performance")
	case kernel:
		detail := "kernel datapath available (generic netlink family ovs_datapath)"
		if len(dps) > 0 {
			detail += ", datapaths: " + strings.Join(dps, ", ")
		}
		return pass(CheckDatapath, detail+bridgeNote)
	}
	why := kerr.Error()
	if errors.Is(kerr, os.ErrNotExist) {
		why = "generic netlink family ovs_datapath not registered (openvswitch kernel module not loaded)"
	}
	if dpType == "system" {
		return fail(CheckDatapath, fmt.Sprintf("kernel datapath unavailable (%s) but %s uses datapath_type=system: it cannot forward", why, d.bridge),
			"modprobe openvswitch, or recreate the bridge with datapath_type=netdev (vpcflow host apply --create-bridge --datapath-type netdev)")
	}
	return warn(CheckDatapath, fmt.Sprintf("kernel datapath unavailable: bridges must use datapath_type=netdev (userspace, slower) (%s)%s", why, bridgeNote),
		"modprobe openvswitch for the kernel datapath; the userspace datapath works but is slower")
}

// 3. cloudbr0 is an OVS bridge, not a Linux bridge.

func (d *doctor) checkBridge() CheckResult {
	migrate := fmt.Sprintf("migrate to Open vSwitch: move the host IP and ports off the Linux bridge, ip link del %[1]s; ovs-vsctl --timeout=10 add-br %[1]s; ovs-vsctl --timeout=10 add-port %[1]s %[2]s; put the host IP on %[1]s; set network.bridge.type=openvswitch in /etc/cloudstack/agent/agent.properties and restart cloudstack-agent; then vpcflow host apply",
		d.bridge, uplinkOr(d.uplink))
	if _, err := d.env.ReadDir(filepath.Join("/sys/class/net", d.bridge, "bridge")); err == nil {
		return fail(CheckBridge, d.bridge+" is a Linux bridge (/sys/class/net/"+d.bridge+"/bridge exists), not an Open vSwitch bridge", migrate)
	}
	if r, ok := d.needDB(CheckBridge); !ok {
		return r
	}
	if d.br == nil {
		return fail(CheckBridge, fmt.Sprintf("no Open vSwitch bridge %s (bridges: %s)", d.bridge, orNone(d.db.Bridges)),
			fmt.Sprintf("ovs-vsctl --timeout=10 add-br %[1]s; ovs-vsctl --timeout=10 add-port %[1]s %[2]s (or vpcflow host apply --create-bridge); set network.bridge.type=openvswitch in agent.properties", d.bridge, uplinkOr(d.uplink)))
	}
	if d.uplink != "" && !slices.ContainsFunc(d.br.Ports, func(p PortState) bool { return p.Name == d.uplink }) {
		return fail(CheckBridge, fmt.Sprintf("uplink %s is not a port of %s", d.uplink, d.bridge),
			fmt.Sprintf("ovs-vsctl --timeout=10 add-port %s %s (move the host IP to %s first)", d.bridge, d.uplink, d.bridge))
	}
	if _, err := d.env.ReadFile(filepath.Join("/sys/class/net", d.bridge, "mtu")); err != nil {
		return warn(CheckBridge, fmt.Sprintf("Open vSwitch bridge %s exists but has no kernel interface (ovs-vswitchd not running, or the bridge failed)", d.bridge),
			"check ovs-vswitchd's log and `ovs-vsctl show` for the bridge's error")
	}
	up := ""
	if d.uplink != "" {
		up = ", uplink " + d.uplink
	}
	return pass(CheckBridge, fmt.Sprintf("%s is an Open vSwitch bridge (%d ports%s)", d.bridge, len(d.br.Ports), up))
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// 4. NetworkManager not managing cloudbr0.

func (d *doctor) networkManagerPid() int {
	if pid, err := d.pidAlive("/run/NetworkManager/NetworkManager.pid", "NetworkManager"); err == nil {
		return pid
	}
	names, err := d.env.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		if c, err := d.env.ReadFile("/proc/" + n + "/comm"); err == nil && strings.TrimSpace(string(c)) == "NetworkManager" {
			return pid
		}
	}
	return 0
}

func (d *doctor) checkNetworkManager(ctx context.Context) CheckResult {
	pid := d.networkManagerPid()
	if pid == 0 {
		return pass(CheckNetworkManager, "NetworkManager is not running")
	}
	devs := []string{d.bridge}
	if ms := d.bondMembers(); len(ms) > 0 {
		devs = append(devs, ms...)
	} else if d.uplink != "" {
		devs = append(devs, d.uplink)
	}
	var conf []string
	for _, dev := range devs {
		conf = append(conf, "interface-name:"+dev)
	}
	fix := fmt.Sprintf("nmcli device set %s managed no, and persist it: [keyfile] unmanaged-devices=%s in /etc/NetworkManager/conf.d/99-vpcflow.conf",
		d.bridge, strings.Join(append(conf, "interface-name:vnet*"), ";"))
	out, err := d.env.Run(ctx, nil, "nmcli", "-t", "-f", "DEVICE,STATE", "device", "status")
	if err != nil {
		return warn(CheckNetworkManager, fmt.Sprintf("NetworkManager runs (pid %d) but nmcli cannot tell whether it manages %s: %v", pid, d.bridge, err), fix)
	}
	states := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if dev, state, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			states[strings.ReplaceAll(dev, `\:`, ":")] = state
		}
	}
	var managed []string
	for _, dev := range devs {
		if st, ok := states[dev]; ok && st != "unmanaged" {
			managed = append(managed, fmt.Sprintf("%s (%s)", dev, st))
		}
	}
	if len(managed) > 0 {
		return fail(CheckNetworkManager, fmt.Sprintf("NetworkManager (pid %d) manages %s: it may reconfigure or tear down the bridge", pid, strings.Join(managed, ", ")), fix)
	}
	return pass(CheckNetworkManager, fmt.Sprintf("NetworkManager runs (pid %d) but does not manage %s", pid, strings.Join(devs, ", ")))
}

// 5. fail_mode.

func (d *doctor) checkFailMode() CheckResult {
	if r, ok := d.needBridge(CheckFailMode); !ok {
		return r
	}
	if d.br.FailMode == "secure" {
		return pass(CheckFailMode, "fail_mode=secure: on controller loss the bridge keeps its flows and never falls back to NORMAL")
	}
	mode := d.br.FailMode
	if mode == "" {
		mode = "unset (= standalone)"
	}
	return fail(CheckFailMode, "fail_mode is "+mode+": standalone flushes to NORMAL on controller loss: guests bridge to the management network",
		fmt.Sprintf("vpcflow host apply%s, or ovs-vsctl --timeout=10 set-fail-mode %s secure (before any tunnel port: see LAB pitfalls)", d.hostSuffix(), d.bridge))
}

// 6. protocols and datapath-id.

func (d *doctor) checkProtocols() CheckResult {
	if r, ok := d.needBridge(CheckProtocols); !ok {
		return r
	}
	fix := fmt.Sprintf("vpcflow host apply%s, or ovs-vsctl --timeout=10 set bridge %s protocols=OpenFlow13", d.hostSuffix(), d.bridge)
	if len(d.br.Protocols) == 0 {
		return warn(CheckProtocols, "protocols unset: the switch offers OVS's default versions; vpcflow speaks only OpenFlow13", fix)
	}
	if !slices.Contains(d.br.Protocols, OpenFlowVersion) {
		return fail(CheckProtocols, "protocols "+strings.Join(d.br.Protocols, ",")+" lack OpenFlow13: the controller cannot talk to the bridge", fix)
	}
	return pass(CheckProtocols, "protocols "+strings.Join(d.br.Protocols, ","))
}

func (d *doctor) checkDatapathID() CheckResult {
	if r, ok := d.needBridge(CheckDatapathID); !ok {
		return r
	}
	cfg := strings.ToLower(d.br.OtherConfig["datapath-id"])
	want := ""
	if d.o.Host != nil {
		want = d.o.Host.DatapathID
		if d.o.Host.DPID != 0 {
			want = fmt.Sprintf("%016x", d.o.Host.DPID)
		}
		want = strings.ToLower(want)
	}
	fixVal := "<16 hex digits from the blueprint>"
	if want != "" {
		fixVal = want
	}
	fix := fmt.Sprintf("vpcflow host apply%s, or ovs-vsctl --timeout=10 set bridge %s other-config:datapath-id=%s", d.hostSuffix(), d.bridge, fixVal)
	if cfg == "" {
		return fail(CheckDatapathID, "other_config:datapath-id is not set: the datapath id derives from a MAC and may change, so the controller cannot identify this bridge", fix)
	}
	if want != "" && cfg != want {
		return fail(CheckDatapathID, fmt.Sprintf("other_config:datapath-id=%s but the blueprint says %s for host %s", cfg, want, d.o.Host.Name), fix)
	}
	if d.br.DatapathID != "" && strings.ToLower(d.br.DatapathID) != cfg {
		return warn(CheckDatapathID, fmt.Sprintf("other_config:datapath-id=%s but the switch reports datapath_id %s (not applied yet?)", cfg, d.br.DatapathID),
			"check that ovs-vswitchd runs; re-run doctor")
	}
	detail := "datapath-id " + cfg
	if want != "" {
		detail += " (matches the blueprint)"
	}
	return pass(CheckDatapathID, detail)
}

// 7. Controller targets, TLS, connection, in-band.

func (d *doctor) checkControllerTargets() CheckResult {
	if r, ok := d.needBridge(CheckControllerTargets); !ok {
		return r
	}
	var have []string
	for _, c := range d.br.Controllers {
		have = append(have, c.Target)
	}
	sort.Strings(have)
	fix := fmt.Sprintf("vpcflow host apply%s (sets one Controller row per blueprint controller)", d.hostSuffix())
	if len(have) == 0 {
		return fail(CheckControllerTargets, d.bridge+" has no controller: nothing programs it", fix)
	}
	if d.o.Blueprint != nil && len(d.o.Blueprint.Controllers) > 0 {
		var missing, extra []string
		for _, t := range d.o.Blueprint.Controllers {
			if !slices.Contains(have, t) {
				missing = append(missing, t)
			}
		}
		for _, t := range have {
			if !slices.Contains(d.o.Blueprint.Controllers, t) {
				extra = append(extra, t)
			}
		}
		if len(missing)+len(extra) > 0 {
			return warn(CheckControllerTargets, fmt.Sprintf("targets %s differ from the blueprint (missing: %s; not in the blueprint: %s)",
				strings.Join(have, ","), orNone(missing), orNone(extra)), fix)
		}
	}
	return pass(CheckControllerTargets, "targets "+strings.Join(have, ","))
}

func (d *doctor) checkControllerTLS() CheckResult {
	if r, ok := d.needBridge(CheckControllerTLS); !ok {
		return r
	}
	if len(d.br.Controllers) == 0 {
		return skip(CheckControllerTLS, "no controller targets")
	}
	var plain, ssl []string
	for _, c := range d.br.Controllers {
		switch {
		case strings.HasPrefix(c.Target, "ssl:"):
			ssl = append(ssl, c.Target)
		case strings.HasPrefix(c.Target, "tcp:"):
			plain = append(plain, c.Target)
		}
	}
	if len(ssl) > 0 && (d.db.SSL == nil || d.db.SSL.PrivateKey == "" || d.db.SSL.Certificate == "" || d.db.SSL.CACert == "") {
		return fail(CheckControllerTLS, "ssl: targets "+strings.Join(ssl, ",")+" but no complete SSL configuration (private key, certificate, CA): the switch cannot connect",
			"ovs-vsctl --timeout=10 set-ssl /etc/openvswitch/sc-privkey.pem /etc/openvswitch/sc-cert.pem /etc/openvswitch/cacert.pem")
	}
	if len(plain) > 0 {
		return warn(CheckControllerTLS, "control channel not encrypted: tcp: targets "+strings.Join(plain, ","),
			"use ssl: targets with ovs-vsctl set-ssl KEY CERT CA (mutual TLS) and ssl: controllers in the blueprint")
	}
	if len(ssl) > 0 {
		return pass(CheckControllerTLS, "all TCP targets use TLS (ssl:), set-ssl configured")
	}
	return pass(CheckControllerTLS, "only local (unix:) targets")
}

func (d *doctor) checkControllerConnected(ctx context.Context) CheckResult {
	if r, ok := d.needBridge(CheckControllerConnected); !ok {
		return r
	}
	if len(d.br.Controllers) == 0 {
		return skip(CheckControllerConnected, "no controller targets")
	}
	// is_connected is written only every ~5 s: poll before declaring a
	// connection down.
	br := d.br
	deadline := time.Now().Add(d.o.Wait)
	for !anyConnected(br) && d.o.Wait > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			deadline = time.Now()
		case <-time.After(500 * time.Millisecond):
		}
		if s, err := d.env.ReadOVSDB(ctx, d.o.Endpoint, d.bridge); err == nil && s.Bridge != nil {
			br = s.Bridge
		}
	}
	d.br.Controllers = br.Controllers // the connection-mode check uses the fresh rows
	var conn, down []string
	for _, c := range br.Controllers {
		if c.IsConnected {
			role := c.Role
			if role == "" {
				role = "other"
			}
			conn = append(conn, c.Target+" ("+role+")")
		} else {
			down = append(down, c.Target)
		}
	}
	if len(conn) == 0 {
		return fail(CheckControllerConnected, "no controller connected: "+strings.Join(down, ",")+" (Controller.is_connected lags ~5 s)",
			"start the controller (vpcflow controller) and check the path from "+d.bridge+" to it; re-run doctor after 5 s")
	}
	detail := "connected to " + strings.Join(conn, ", ")
	if len(down) > 0 {
		return warn(CheckControllerConnected, detail+"; not connected: "+strings.Join(down, ","),
			"check the missing replicas (vpcflow status on each)")
	}
	return pass(CheckControllerConnected, detail)
}

func anyConnected(b *BridgeState) bool {
	for _, c := range b.Controllers {
		if c.IsConnected {
			return true
		}
	}
	return false
}

func (d *doctor) checkConnectionMode() CheckResult {
	if r, ok := d.needBridge(CheckConnectionMode); !ok {
		return r
	}
	if len(d.br.Controllers) == 0 {
		return skip(CheckConnectionMode, "no controller targets")
	}
	var inband []string
	for _, c := range d.br.Controllers {
		if c.ConnectionMode == "" || c.ConnectionMode == ModeInBand {
			inband = append(inband, c.Target)
		}
	}
	switch {
	case len(inband) > 0 && anyConnected(d.br):
		return warn(CheckConnectionMode, "in-band control while the controller is connected ("+strings.Join(inband, ",")+"): OVS's hidden in-band flows let guests reach the controller",
			fmt.Sprintf("run vpcflow host watch%s on the host (it switches to out-of-band once the management flows are installed)", d.hostSuffix()))
	case len(inband) > 0:
		return pass(CheckConnectionMode, "in-band while no controller is connected (how a fresh or restarted switch reaches the controller)")
	}
	return pass(CheckConnectionMode, "out-of-band: no hidden in-band flows")
}

// 8. ovsdb-server listening beyond loopback/management.

// listener is one passive OVSDB remote or listening socket.
type listener struct {
	proto  string // ptcp or pssl ("tcp" when only the socket is known)
	addr   netip.Addr
	port   int
	source string
}

// ParsePassiveRemote parses an OVSDB passive remote ptcp:PORT[:IP] or
// pssl:PORT[:IP] (IPv6 in brackets). ok is false for other remotes.
func ParsePassiveRemote(r string) (proto string, port int, addr netip.Addr, ok bool) {
	proto, rest, found := strings.Cut(strings.TrimSpace(r), ":")
	if !found || (proto != "ptcp" && proto != "pssl") {
		return "", 0, netip.Addr{}, false
	}
	ps, host, _ := strings.Cut(rest, ":")
	p, err := strconv.Atoi(ps)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, netip.Addr{}, false
	}
	host = strings.Trim(host, "[]")
	if host == "" {
		return proto, p, netip.IPv4Unspecified(), true
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return "", 0, netip.Addr{}, false
	}
	return proto, p, a.Unmap(), true
}

// ParseProcNetTCP returns the listening sockets (state 0A) of a
// /proc/net/tcp or /proc/net/tcp6 file, by socket inode.
func ParseProcNetTCP(data string) map[string]netip.AddrPort {
	out := map[string]netip.AddrPort{}
	for _, line := range strings.Split(data, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != "0A" {
			continue
		}
		h, ps, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		port, err := strconv.ParseUint(ps, 16, 16)
		if err != nil {
			continue
		}
		raw, err := hex.DecodeString(h)
		if err != nil || (len(raw) != 4 && len(raw) != 16) {
			continue
		}
		// The kernel prints each 32-bit word in host (little-endian) order.
		for i := 0; i+4 <= len(raw); i += 4 {
			raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
		}
		a, _ := netip.AddrFromSlice(raw)
		out[f[9]] = netip.AddrPortFrom(a.Unmap(), uint16(port))
	}
	return out
}

// sockets lists the TCP sockets ovsdb-server (pid) listens on.
func (d *doctor) sockets(pid int) ([]netip.AddrPort, error) {
	fds, err := d.env.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := d.env.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var out []netip.AddrPort
	read := 0
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := d.env.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		read++
		for ino, ap := range ParseProcNetTCP(string(b)) {
			if inodes[ino] {
				out = append(out, ap)
			}
		}
	}
	if read == 0 {
		return nil, fmt.Errorf("cannot read /proc/%d/net/tcp", pid)
	}
	return out, nil
}

func (d *doctor) checkOVSDBListen(ctx context.Context) CheckResult {
	var ls []listener
	var notes []string
	// Configured passive remotes: ovsdb-server's own (--remote, add-remote)
	// and the Manager rows it serves when it has the db:...manager_options
	// remote (as the distribution scripts start it).
	pid, perr := d.pidAlive(filepath.Join(d.o.RunDir, "ovsdb-server.pid"), "ovsdb-server")
	remotesKnown := false
	if perr == nil {
		out, err := d.env.Run(ctx, []string{"OVS_RUNDIR=" + d.o.RunDir}, "ovs-appctl", "--timeout=5", "-t", "ovsdb-server", "ovsdb-server/list-remotes")
		if err != nil {
			notes = append(notes, "list-remotes: "+err.Error())
		} else {
			remotesKnown = true
			for _, r := range strings.Fields(out) {
				if proto, port, a, ok := ParsePassiveRemote(r); ok {
					ls = append(ls, listener{proto: proto, addr: a, port: port, source: "remote " + r})
				}
			}
		}
	} else {
		notes = append(notes, perr.Error())
	}
	if d.db != nil {
		for _, m := range d.db.Managers {
			if proto, port, a, ok := ParsePassiveRemote(m.Target); ok {
				ls = append(ls, listener{proto: proto, addr: a, port: port, source: "Manager " + m.Target})
			}
		}
	}
	// Ground truth: the sockets the ovsdb-server process listens on.
	socketsKnown := false
	if perr == nil {
		socks, err := d.sockets(pid)
		if err != nil {
			notes = append(notes, "sockets: "+err.Error())
		} else {
			socketsKnown = true
			for _, s := range socks {
				proto := "tcp"
				for _, l := range ls {
					if l.port == int(s.Port()) {
						proto = l.proto
					}
				}
				ls = append(ls, listener{proto: proto, addr: s.Addr(), port: int(s.Port()), source: "socket"})
			}
			for i := range ls {
				if ls[i].source == "socket" && !slices.ContainsFunc(ls[:i], func(o listener) bool { return o.addr == ls[i].addr && o.port == ls[i].port }) {
					ls[i].source = "listening socket"
				}
			}
		}
	}
	if !remotesKnown && !socketsKnown && (d.db == nil || len(ls) == 0) {
		return warn(CheckOVSDBListen, "cannot inspect ovsdb-server's remotes or sockets: "+strings.Join(notes, "; "),
			"run vpcflow doctor on the hypervisor as root (with OVS_RUNDIR set if Open vSwitch uses a non-default run directory)")
	}
	// One verdict per address:port; a socket and the remote that opened it
	// are the same listener.
	type key struct {
		a netip.Addr
		p int
	}
	seen := map[key]int{}
	var uniq []listener
	for _, l := range ls {
		k := key{l.addr, l.port}
		if i, ok := seen[k]; ok {
			if uniq[i].proto == "tcp" {
				uniq[i].proto = l.proto
			}
			switch {
			case l.source == "socket" && !strings.HasSuffix(uniq[i].source, ", listening"):
				uniq[i].source += ", listening"
			case l.source != "socket" && !strings.Contains(uniq[i].source, l.source):
				uniq[i].source += ", " + l.source
			}
			continue
		}
		seen[k] = len(uniq)
		uniq = append(uniq, l)
	}
	status := StatusPass
	var bad, ok []string
	fix := ""
	raise := func(s CheckStatus, f string) {
		if s == StatusFail || (s == StatusWarn && status == StatusPass) {
			status = s
			fix = f
		}
	}
	removeFix := func(l listener) string {
		return fmt.Sprintf("ovs-appctl -t ovsdb-server ovsdb-server/remove-remote %s:%d%s (and drop it from the startup options / Manager table: ovs-vsctl del-manager); listen on loopback or a management address with pssl:",
			l.proto, l.port, addrSuffix(l.addr))
	}
	for _, l := range uniq {
		desc := fmt.Sprintf("%s %s (%s)", l.proto, netip.AddrPortFrom(l.addr, uint16(l.port)), l.source)
		switch {
		case l.addr.IsUnspecified():
			bad = append(bad, desc+": every address")
			raise(StatusFail, removeFix(l))
		case l.addr.IsLoopback():
			ok = append(ok, desc)
		case d.inMgmt(l.addr):
			if l.proto == "pssl" {
				ok = append(ok, desc)
			} else {
				bad = append(bad, desc+": management address without TLS")
				raise(StatusWarn, fmt.Sprintf("use pssl:%d:%s with ovs-vsctl set-ssl instead of %s", l.port, l.addr, l.proto))
			}
		case len(d.mgmtNets) == 0:
			bad = append(bad, desc+": cannot tell whether this is a management address")
			raise(StatusWarn, "pass --blueprint FILE --host NAME so doctor knows the management CIDRs")
		default:
			bad = append(bad, desc+": not loopback and outside the management CIDRs "+prefixList(d.mgmtNets))
			raise(StatusFail, removeFix(l))
		}
	}
	if status != StatusPass {
		return CheckResult{Check: CheckOVSDBListen, Status: status, Detail: "ovsdb-server listens beyond loopback/management: " + strings.Join(bad, "; "), Remediation: fix}
	}
	if len(ok) == 0 {
		return pass(CheckOVSDBListen, "ovsdb-server has no TCP listeners (unix socket only)")
	}
	return pass(CheckOVSDBListen, "ovsdb-server listens only on loopback/management: "+strings.Join(ok, "; "))
}

func addrSuffix(a netip.Addr) string {
	if a.Is6() {
		return ":[" + a.String() + "]"
	}
	return ":" + a.String()
}

func prefixList(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return "[" + strings.Join(s, ",") + "]"
}

func (d *doctor) inMgmt(a netip.Addr) bool {
	for _, p := range d.mgmtNets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// 9. MTU and the tunnel IP.

func (d *doctor) readMTU(dev string) (int, error) {
	b, err := d.env.ReadFile(filepath.Join("/sys/class/net", dev, "mtu"))
	if err != nil {
		return 0, fmt.Errorf("interface %s not found (/sys/class/net/%s/mtu): %w", dev, dev, err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func (d *doctor) checkMTU() CheckResult {
	if d.uplink == "" {
		return skip(CheckMTU, "uplink unknown: pass --uplink or --blueprint FILE --host NAME")
	}
	encap := d.encap
	if encap == "" {
		encap = flows.EncapVXLAN
	}
	over := EncapOverhead(encap)
	need := d.o.GuestMTU + over
	if ms := d.bondMembers(); len(ms) > 0 {
		return d.checkBondMTU(ms, need, fmt.Sprintf("%d guest + %d %s", d.o.GuestMTU, over, encap))
	}
	mtu, err := d.readMTU(d.uplink)
	if err != nil {
		return fail(CheckMTU, err.Error(), "check the uplink name (blueprint uplink: or --uplink)")
	}
	what := fmt.Sprintf("%d guest + %d %s", d.o.GuestMTU, over, encap)
	vlan := ""
	if b, err := d.env.ReadFile(filepath.Join("/proc/net/vlan", d.uplink)); err == nil {
		vlan = fmt.Sprintf("; %s is an 802.1Q VLAN device: its parent NIC and the switch ports must carry %d + %d bytes", d.uplink, need, VLANOverhead)
		for _, line := range strings.Split(string(b), "\n") {
			if _, parent, ok := strings.Cut(line, "Device: "); ok {
				if pm, err := d.readMTU(strings.TrimSpace(parent)); err == nil && pm < need {
					return fail(CheckMTU, fmt.Sprintf("VLAN parent %s MTU %d < %d (%s)", strings.TrimSpace(parent), pm, need, what),
						fmt.Sprintf("ip link set %s mtu %d (and the underlay switch ports)", strings.TrimSpace(parent), need+VLANOverhead))
				}
			}
		}
	} else {
		vlan = fmt.Sprintf(" (+%d if the underlay is VLAN-tagged)", VLANOverhead)
	}
	if mtu < need {
		return fail(CheckMTU, fmt.Sprintf("uplink %s MTU %d < %d (%s): large guest packets are dropped silently after encapsulation%s", d.uplink, mtu, need, what, vlan),
			fmt.Sprintf("ip link set %s mtu %d and persist it (and the underlay switch ports), or lower the guest MTU to %d", d.uplink, need, mtu-over))
	}
	return pass(CheckMTU, fmt.Sprintf("uplink %s MTU %d >= %d (%s)%s", d.uplink, mtu, need, what, vlan))
}

func (d *doctor) checkTunnelIP() CheckResult {
	if d.o.Host == nil || !d.o.Host.Addr.IsValid() {
		return skip(CheckTunnelIP, "tunnel_ip unknown: pass --blueprint FILE --host NAME")
	}
	want := d.o.Host.Addr
	addrs, err := d.env.InterfaceAddrs(d.bridge)
	fix := fmt.Sprintf("ip addr add %s/PREFIX dev %s && ip link set %s up (the host IP lives on the bridge's internal port, as CloudStack does)", want, d.bridge, d.bridge)
	if err != nil {
		return warn(CheckTunnelIP, fmt.Sprintf("cannot read %s's addresses: %v", d.bridge, err), fix)
	}
	for _, p := range addrs {
		if p.Addr().Unmap() == want {
			return pass(CheckTunnelIP, fmt.Sprintf("tunnel_ip %s is on %s", p, d.bridge))
		}
	}
	return warn(CheckTunnelIP, fmt.Sprintf("tunnel_ip %s is not configured on %s (addresses: %s): tunnels are routed out of the bridge that owns it", want, d.bridge, prefixList(addrs)), fix)
}

// 10. Tunnel port.

func (d *doctor) checkTunnelPort() CheckResult {
	if r, ok := d.needBridge(CheckTunnelPort); !ok {
		return r
	}
	encap := d.encap
	fix := fmt.Sprintf("vpcflow host apply%s", d.hostSuffix())
	if encap == "" {
		return fail(CheckTunnelPort, fmt.Sprintf("no vpcflow tunnel port (vpcflow-vxlan or vpcflow-gre) on %s", d.bridge), fix)
	}
	name := TunnelPortName(encap)
	var iface *InterfaceState
	for _, p := range d.br.Ports {
		if p.Name == name && len(p.Interfaces) > 0 {
			iface = &p.Interfaces[0]
		}
	}
	if iface == nil {
		return fail(CheckTunnelPort, fmt.Sprintf("tunnel port %s is missing on %s", name, d.bridge), fix)
	}
	var probs []string
	if iface.Type != string(encap) {
		probs = append(probs, fmt.Sprintf("type %q, want %s", iface.Type, encap))
	}
	for _, k := range []string{optRemoteIP, optKey} {
		if iface.Options[k] != flowValue {
			probs = append(probs, fmt.Sprintf("options:%s=%q, want flow", k, iface.Options[k]))
		}
	}
	if d.o.Host != nil && d.o.Host.Addr.IsValid() {
		if iface.Options[optLocalIP] != d.o.Host.Addr.String() {
			probs = append(probs, fmt.Sprintf("options:local_ip=%q, want %s", iface.Options[optLocalIP], d.o.Host.Addr))
		}
	} else if iface.Options[optLocalIP] == "" {
		probs = append(probs, "options:local_ip unset")
	}
	if iface.Error != "" {
		probs = append(probs, "error: "+iface.Error)
	}
	if iface.Ofport != nil && *iface.Ofport < 0 {
		probs = append(probs, "ofport -1 (the switch could not add it)")
	}
	if len(probs) > 0 {
		return fail(CheckTunnelPort, fmt.Sprintf("tunnel port %s: %s", name, strings.Join(probs, "; ")), fix)
	}
	of := ""
	if iface.Ofport != nil {
		of = fmt.Sprintf(", ofport %d", *iface.Ofport)
	}
	return pass(CheckTunnelPort, fmt.Sprintf("%s: type %s, remote_ip=flow, key=flow, local_ip=%s%s", name, iface.Type, iface.Options[optLocalIP], of))
}

// 11. The controller's view of this bridge.

// doctorStatus is the part of the controller's GET /status doctor reads.
type doctorStatus struct {
	Revision uint32 `json:"revision"`
	Bridges  []struct {
		DatapathID string `json:"datapath_id"`
		Host       string `json:"host"`
		Known      bool   `json:"known"`
		Connected  bool   `json:"connected"`
		Role       string `json:"role"`
		Converged  bool   `json:"converged"`
		Owner      string `json:"owner"`
		Standby    string `json:"standby"`
		LastError  string `json:"last_error"`
	} `json:"bridges"`
}

func (d *doctor) bridgeDPID() string {
	if d.o.Host != nil && d.o.Host.DPID != 0 {
		return fmt.Sprintf("%016x", d.o.Host.DPID)
	}
	if d.br != nil {
		if v := d.br.OtherConfig["datapath-id"]; v != "" {
			return strings.ToLower(v)
		}
		return strings.ToLower(d.br.DatapathID)
	}
	return ""
}

func (d *doctor) checkControllerStatus(ctx context.Context) CheckResult {
	url := strings.TrimRight(d.o.ControllerURL, "/") + "/status"
	body, err := d.env.HTTPGet(ctx, url)
	if err != nil {
		if !d.o.ControllerURLSet {
			return skip(CheckControllerStatus, "no controller status API at "+d.o.ControllerURL+" (pass --controller-url to check convergence)")
		}
		return fail(CheckControllerStatus, fmt.Sprintf("cannot read %s: %v", url, err), "check --controller-url and that vpcflow controller runs with --http")
	}
	var st doctorStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return fail(CheckControllerStatus, fmt.Sprintf("%s is not a vpcflow status document: %v", url, err), "check --controller-url")
	}
	dpid := d.bridgeDPID()
	if dpid == "" {
		return skip(CheckControllerStatus, "datapath id unknown: pass --blueprint FILE --host NAME")
	}
	for _, b := range st.Bridges {
		if strings.ToLower(b.DatapathID) != dpid {
			continue
		}
		fix := "see vpcflow status --controller " + d.o.ControllerURL + " and the controller log"
		switch {
		case !b.Known:
			return fail(CheckControllerStatus, "the controller does not know datapath "+dpid+": it gets no guest flows", "add the host to the blueprint with datapath_id "+dpid)
		case !b.Connected && b.Owner == "":
			return fail(CheckControllerStatus, "datapath "+dpid+" is not connected to the controller at "+d.o.ControllerURL, fix)
		case strings.EqualFold(b.Role, "MASTER") && b.Converged:
			return pass(CheckControllerStatus, fmt.Sprintf("datapath %s converged, role MASTER, revision %d", dpid, st.Revision))
		case strings.EqualFold(b.Role, "MASTER"):
			detail := "datapath " + dpid + " mastered but not converged"
			if b.LastError != "" {
				detail += ": " + b.LastError
			}
			return fail(CheckControllerStatus, detail, fix)
		case b.Owner != "":
			return pass(CheckControllerStatus, fmt.Sprintf("datapath %s is mastered by replica %s (this replica: %s%s); its convergence is on the owner's /status", dpid, b.Owner, orDash(b.Role), standbyNote(b.Standby)))
		}
		return fail(CheckControllerStatus, fmt.Sprintf("no replica holds role MASTER for datapath %s (role here %s%s)", dpid, orDash(b.Role), standbyNote(b.Standby)), fix)
	}
	return fail(CheckControllerStatus, "the controller at "+d.o.ControllerURL+" does not list datapath "+dpid, "check that this host is in the controller's blueprint")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func standbyNote(s string) string {
	if s == "" {
		return ""
	}
	return ", " + s
}

// SystemEnv is the real host: the local file system, commands from PATH,
// the kernel's interfaces, generic netlink (go-openvswitch ovsnl), HTTP and
// a read-only OVSDB session.
type SystemEnv struct {
	// TLS is the OVSDB client configuration for ssl: endpoints.
	TLS *tls.Config
}

// ReadFile implements DoctorEnv.
func (SystemEnv) ReadFile(path string) ([]byte, error) { return os.ReadFile(path) }

// ReadDir implements DoctorEnv.
func (SystemEnv) ReadDir(path string) ([]string, error) {
	es, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Name()
	}
	return out, nil
}

// Readlink implements DoctorEnv.
func (SystemEnv) Readlink(path string) (string, error) { return os.Readlink(path) }

// Run implements DoctorEnv.
func (SystemEnv) Run(ctx context.Context, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return string(out), fmt.Errorf("%s: %w: %s", name, err, msg)
		}
		return string(out), fmt.Errorf("%s: %w", name, err)
	}
	return string(out), nil
}

// InterfaceAddrs implements DoctorEnv.
func (SystemEnv) InterfaceAddrs(name string) ([]netip.Prefix, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, err
	}
	as, err := ifi.Addrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				ones, _ := n.Mask.Size()
				out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
			}
		}
	}
	return out, nil
}

// KernelDatapaths implements DoctorEnv with go-openvswitch's ovsnl.
func (SystemEnv) KernelDatapaths() ([]string, error) {
	c, err := ovsnl.New()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if c.Datapath == nil {
		return nil, os.ErrNotExist
	}
	dps, err := c.Datapath.List()
	if err != nil {
		return nil, fmt.Errorf("list kernel datapaths: %w", err)
	}
	var names []string
	for _, dp := range dps {
		names = append(names, dp.Name)
	}
	sort.Strings(names)
	return names, nil
}

// HTTPGet implements DoctorEnv.
func (SystemEnv) HTTPGet(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return body, nil
}

// ReadOVSDB implements DoctorEnv: one session, one read-only transaction.
func (e SystemEnv) ReadOVSDB(ctx context.Context, endpoint, bridge string) (*OVSDBState, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := dialDoctor(ctx, endpoint, e.TLS)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.readDoctorState(ctx, bridge)
}

// The doctor's own read-only models: more columns than provisioning needs.
type docRootRow struct {
	UUID           string   `ovsdb:"_uuid"`
	OVSVersion     *string  `ovsdb:"ovs_version"`
	CurCfg         int      `ovsdb:"cur_cfg"`
	NextCfg        int      `ovsdb:"next_cfg"`
	ManagerOptions []string `ovsdb:"manager_options"`
	SSL            *string  `ovsdb:"ssl"`
	Bridges        []string `ovsdb:"bridges"`
}

type docBridgeRow struct {
	UUID         string            `ovsdb:"_uuid"`
	Name         string            `ovsdb:"name"`
	DatapathType string            `ovsdb:"datapath_type"`
	DatapathID   *string           `ovsdb:"datapath_id"`
	FailMode     *string           `ovsdb:"fail_mode"`
	Protocols    []string          `ovsdb:"protocols"`
	OtherConfig  map[string]string `ovsdb:"other_config"`
	Ports        []string          `ovsdb:"ports"`
	Controller   []string          `ovsdb:"controller"`
}

type docPortRow struct {
	UUID            string   `ovsdb:"_uuid"`
	Name            string   `ovsdb:"name"`
	Tag             *int     `ovsdb:"tag"`
	Interfaces      []string `ovsdb:"interfaces"`
	BondMode        *string  `ovsdb:"bond_mode"`
	LACP            *string  `ovsdb:"lacp"`
	BondActiveSlave *string  `ovsdb:"bond_active_slave"`
}

type docInterfaceRow struct {
	UUID        string            `ovsdb:"_uuid"`
	Name        string            `ovsdb:"name"`
	Type        string            `ovsdb:"type"`
	Options     map[string]string `ovsdb:"options"`
	Ofport      *int              `ovsdb:"ofport"`
	Error       *string           `ovsdb:"error"`
	LinkState   *string           `ovsdb:"link_state"`
	LACPCurrent *bool             `ovsdb:"lacp_current"`
}

type docControllerRow struct {
	UUID           string  `ovsdb:"_uuid"`
	Target         string  `ovsdb:"target"`
	ConnectionMode *string `ovsdb:"connection_mode"`
	IsConnected    bool    `ovsdb:"is_connected"`
	Role           *string `ovsdb:"role"`
}

type docManagerRow struct {
	UUID        string `ovsdb:"_uuid"`
	Target      string `ovsdb:"target"`
	IsConnected bool   `ovsdb:"is_connected"`
}

type docSSLRow struct {
	UUID        string `ovsdb:"_uuid"`
	PrivateKey  string `ovsdb:"private_key"`
	Certificate string `ovsdb:"certificate"`
	CACert      string `ovsdb:"ca_cert"`
}

const (
	tableManager = "Manager"
	tableSSL     = "SSL"
)

// dialDoctor opens a session with the doctor's models; tlsConfig is
// required for ssl: endpoints.
func dialDoctor(ctx context.Context, endpoint string, tlsConfig *tls.Config) (*Client, error) {
	if err := CheckEndpoint(endpoint); err != nil {
		return nil, err
	}
	if strings.HasPrefix(endpoint, "ssl:") && tlsConfig == nil {
		return nil, fmt.Errorf("OVSDB endpoint %s needs a client certificate (--tls-cert, --tls-key, --tls-ca); on the host itself use the local socket unix:$OVS_RUNDIR/db.sock", endpoint)
	}
	dbm, err := model.NewClientDBModel("Open_vSwitch", map[string]model.Model{
		tableRoot:       &docRootRow{},
		tableBridge:     &docBridgeRow{},
		tablePort:       &docPortRow{},
		tableInterface:  &docInterfaceRow{},
		tableController: &docControllerRow{},
		tableManager:    &docManagerRow{},
		tableSSL:        &docSSLRow{},
	})
	if err != nil {
		return nil, fmt.Errorf("OVSDB model: %w", err)
	}
	opts := []client.Option{client.WithEndpoint(endpoint)}
	if tlsConfig != nil && strings.HasPrefix(endpoint, "ssl:") {
		opts = append(opts, client.WithTLSConfig(tlsConfig))
	}
	ovs, err := client.NewOVSDBClient(dbm, opts...)
	if err != nil {
		return nil, fmt.Errorf("OVSDB client for %s: %w", endpoint, err)
	}
	if err := ovs.Connect(ctx); err != nil {
		return nil, fmt.Errorf("cannot connect to ovsdb-server at %s: %w", endpoint, err)
	}
	return &Client{endpoint: endpoint, ovs: ovs}, nil
}

func (c *Client) readDoctorState(ctx context.Context, bridge string) (*OVSDBState, error) {
	tables := []string{tableRoot, tableBridge, tablePort, tableInterface, tableController, tableManager, tableSSL}
	ops := make([]ovsdb.Operation, len(tables))
	for i, t := range tables {
		ops[i] = selectOp(t)
	}
	rows, err := c.read(ctx, ops)
	if err != nil {
		return nil, err
	}
	roots, err := decodeRows[docRootRow](c, tableRoot, rows[0])
	if err != nil {
		return nil, err
	}
	if len(roots) != 1 {
		return nil, errors.New("the Open_vSwitch table has no row: initialise the database (ovs-vsctl --no-wait init)")
	}
	brs, err := decodeRows[docBridgeRow](c, tableBridge, rows[1])
	if err != nil {
		return nil, err
	}
	ports, err := decodeRows[docPortRow](c, tablePort, rows[2])
	if err != nil {
		return nil, err
	}
	ifaces, err := decodeRows[docInterfaceRow](c, tableInterface, rows[3])
	if err != nil {
		return nil, err
	}
	ctrls, err := decodeRows[docControllerRow](c, tableController, rows[4])
	if err != nil {
		return nil, err
	}
	mgrs, err := decodeRows[docManagerRow](c, tableManager, rows[5])
	if err != nil {
		return nil, err
	}
	ssls, err := decodeRows[docSSLRow](c, tableSSL, rows[6])
	if err != nil {
		return nil, err
	}
	root := roots[0]
	st := &OVSDBState{OVSVersion: deref(root.OVSVersion), CurCfg: root.CurCfg, NextCfg: root.NextCfg}
	for _, m := range mgrs {
		if slices.Contains(root.ManagerOptions, m.UUID) {
			st.Managers = append(st.Managers, ManagerState{Target: m.Target, IsConnected: m.IsConnected})
		}
	}
	sort.Slice(st.Managers, func(i, j int) bool { return st.Managers[i].Target < st.Managers[j].Target })
	for _, s := range ssls {
		if root.SSL != nil && *root.SSL == s.UUID {
			st.SSL = &SSLState{PrivateKey: s.PrivateKey, Certificate: s.Certificate, CACert: s.CACert}
		}
	}
	ifByUUID := map[string]*docInterfaceRow{}
	for _, i := range ifaces {
		ifByUUID[i.UUID] = i
	}
	portByUUID := map[string]*docPortRow{}
	for _, p := range ports {
		portByUUID[p.UUID] = p
	}
	ctrlByUUID := map[string]*docControllerRow{}
	for _, r := range ctrls {
		ctrlByUUID[r.UUID] = r
	}
	for _, b := range brs {
		st.Bridges = append(st.Bridges, b.Name)
		if b.Name != bridge {
			continue
		}
		bs := &BridgeState{Name: b.Name, DatapathType: b.DatapathType, DatapathID: deref(b.DatapathID), FailMode: deref(b.FailMode),
			Protocols: slices.Sorted(slices.Values(b.Protocols)), OtherConfig: b.OtherConfig}
		for _, pu := range b.Ports {
			p, ok := portByUUID[pu]
			if !ok {
				continue
			}
			ps := PortState{Name: p.Name, Tag: p.Tag, BondMode: deref(p.BondMode), LACP: deref(p.LACP), BondActive: deref(p.BondActiveSlave)}
			for _, iu := range p.Interfaces {
				if i, ok := ifByUUID[iu]; ok {
					ps.Interfaces = append(ps.Interfaces, InterfaceState{Name: i.Name, Type: i.Type, Options: i.Options, Ofport: i.Ofport,
						Error: deref(i.Error), LinkState: deref(i.LinkState), LACPCurrent: i.LACPCurrent})
				}
			}
			bs.Ports = append(bs.Ports, ps)
		}
		sort.Slice(bs.Ports, func(i, j int) bool { return bs.Ports[i].Name < bs.Ports[j].Name })
		for _, cu := range b.Controller {
			if r, ok := ctrlByUUID[cu]; ok {
				bs.Controllers = append(bs.Controllers, ControllerState{Target: r.Target, ConnectionMode: deref(r.ConnectionMode), IsConnected: r.IsConnected, Role: deref(r.Role)})
			}
		}
		sort.Slice(bs.Controllers, func(i, j int) bool { return bs.Controllers[i].Target < bs.Controllers[j].Target })
		st.Bridge = bs
	}
	sort.Strings(st.Bridges)
	return st, nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
