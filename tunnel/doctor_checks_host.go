package tunnel

// vpcflow doctor checks 1-6: Open vSwitch running, the datapath, the bridge
// type, NetworkManager, fail_mode, protocols and datapath-id.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

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
