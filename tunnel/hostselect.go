package tunnel

// Which host am I? `vpcflow host apply` and `host watch` take --host; when
// it is not given they find the host themselves, so one unit file serves
// every hypervisor: the machine's hostname (or its first label) when the
// blueprint or host file names such a host, else the bridge's datapath id
// (other_config:datapath-id, which `host apply` sets, else the datapath_id
// ovs-vswitchd reports). Anything else fails closed with the fix.

import (
	"context"
	"crypto/tls"
	"fmt"
	"strconv"
	"strings"

	"github.com/vpcflow/vpcflow/flows"
)

// HostChoice is the host SelectHost found and how.
type HostChoice struct {
	Host *flows.Host
	// By is "flag", "hostname" or "datapath-id".
	By string
}

// SelectHost picks this machine's host among candidates (a blueprint's
// hosts, or a host file's own host only). name is --host ("" when not
// given); hostname is the machine's host name; bridgeDPID reads the
// bridge's datapath id (called only when the hostname does not decide).
// source names the file in errors.
func SelectHost(candidates []flows.Host, source, name, hostname string, bridgeDPID func() (uint64, error)) (HostChoice, error) {
	names := make([]string, 0, len(candidates))
	for i := range candidates {
		names = append(names, candidates[i].Name)
	}
	list := strings.Join(names, ", ")
	find := func(n string) *flows.Host {
		for i := range candidates {
			if candidates[i].Name == n {
				return &candidates[i]
			}
		}
		return nil
	}
	if name != "" {
		if h := find(name); h != nil {
			return HostChoice{h, "flag"}, nil
		}
		if len(candidates) == 1 {
			return HostChoice{}, fmt.Errorf("--host %s: %s is the host file of %s, not of %s: install %s's own file (vpcflow host config --blueprint FILE --host %s)", name, source, list, name, name, name)
		}
		return HostChoice{}, fmt.Errorf("host %q is not in %s (hosts: %s)", name, source, list)
	}
	short, _, _ := strings.Cut(hostname, ".")
	for _, n := range []string{hostname, short} {
		if h := find(n); n != "" && h != nil {
			return HostChoice{h, "hostname"}, nil
		}
	}
	dpid, err := bridgeDPID()
	if err == nil {
		for i := range candidates {
			if id := hostDPID(&candidates[i]); id != 0 && id == dpid {
				return HostChoice{&candidates[i], "datapath-id"}, nil
			}
		}
	}
	why := fmt.Sprintf("the bridge's datapath id %016x is not one of theirs", dpid)
	if len(candidates) == 1 {
		why = fmt.Sprintf("the bridge's datapath id %016x is not %s's (%s)", dpid, list, candidates[0].DatapathID)
	}
	if err != nil {
		why = fmt.Sprintf("the bridge's datapath id could not be read (%v)", err)
	}
	if len(candidates) == 1 {
		return HostChoice{}, fmt.Errorf("%s is the host file of %s, but this machine's hostname is %q and %s: install this host's own file (vpcflow host config --blueprint FILE --host NAME), or pass --host %s if this machine is %s",
			source, list, hostname, why, list, list)
	}
	return HostChoice{}, fmt.Errorf("no --host given, this machine's hostname %q names no host in %s (hosts: %s), and %s: pass --host NAME", hostname, source, list, why)
}

// hostDPID is a host's datapath id, parsed or from its text.
func hostDPID(h *flows.Host) uint64 {
	if h.DPID != 0 {
		return h.DPID
	}
	id, _ := strconv.ParseUint(h.DatapathID, 16, 64)
	return id
}

// BridgeDatapathID reads bridge's datapath id over OVSDB: its
// other_config:datapath-id (what host apply sets), else the datapath_id
// column ovs-vswitchd reports.
func BridgeDatapathID(ctx context.Context, endpoint string, tlsConfig *tls.Config, bridge string) (uint64, error) {
	c, err := DialTLS(ctx, endpoint, tlsConfig)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	s, err := c.readSnapshot(ctx, bridge, nil)
	if err != nil {
		return 0, err
	}
	if s.bridge == nil {
		return 0, fmt.Errorf("bridge %s not found on %s", bridge, endpoint)
	}
	for _, v := range []string{s.bridge.OtherConfig["datapath-id"], strOr(s.bridge.DatapathID, "")} {
		if id, err := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 64); v != "" && err == nil && id != 0 {
			return id, nil
		}
	}
	return 0, fmt.Errorf("bridge %s on %s has no datapath id yet", bridge, endpoint)
}

// HostApplyOptions are the ApplyOptions a blueprint, or a host file's
// host-only blueprint (flows.HostConfig.Blueprint), gives host h: the host,
// the encapsulation and the controllers. Callers add the endpoint, the
// bridge and the rest.
func HostApplyOptions(bp *flows.Blueprint, h *flows.Host) ApplyOptions {
	return ApplyOptions{Host: h, Encapsulation: bp.Encapsulation, Controllers: append([]string(nil), bp.Controllers...)}
}
