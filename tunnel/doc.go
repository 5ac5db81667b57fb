// Package tunnel provisions a host's cloudbr0 over OVSDB (RFC 7047, via
// libovsdb) and manages its in-band control channel.
//
// # Provisioning (vpcflow host apply)
//
// Apply works on a bridge made by hand as in the CloudStack field guides
// (ovs-vsctl add-br cloudbr0; add-port cloudbr0 eth0; host IP on cloudbr0)
// or creates it with CreateBridge. It never changes an existing bridge's
// datapath_type. Each logical change is one OVSDB transaction, committed
// in this order, because the order matters on a live host (changing
// fail_mode flushes flows; NORMAL forwarding with LOCAL and a tunnel port
// together loops OVS's own tunnel ARP):
//
//  1. bridge creation (only with CreateBridge): the Interface and Port of
//     the uplink and the Bridge, already fail_mode=secure with protocols
//     and other_config set, so the bridge never forwards NORMAL;
//  2. bridge settings: protocols=[OpenFlow13], fail_mode=secure,
//     other_config:datapath-id=<16 hex digits>, other_config:hwaddr=
//     <tunnel_mac> when the host has one. Single other_config keys are set
//     with a mutate (delete key, insert key/value), never by rewriting the
//     map, so the operator's other keys (and hwaddr, without a tunnel_mac)
//     survive;
//  3. Controller rows: exactly one per blueprint target, with max_backoff
//     and inactivity_probe; rows for other targets and duplicates are
//     dropped from the bridge (OVSDB garbage-collects them). New rows leave
//     connection_mode unset (= in-band); existing rows' connection_mode is
//     never touched: the watcher owns it;
//  4. a bonded uplink (bond.go): the bond Port with exactly the member
//     interfaces, bond_mode, lacp and (with LACP) other_config:lacp-time=
//     fast. A member that is its own single-interface port of the bridge is
//     adopted in the same transaction (its Port row deleted, its Interface
//     row moved into the bond, so it keeps its ofport); a member held by
//     any other port is an error. Guards: the Bridge's ports, the bond
//     Port's interfaces and bond columns, each adopted Port's interfaces;
//  5. the tunnel port: one flow-based port, vpcflow-vxlan (type vxlan) or
//     vpcflow-gre (type gre), options remote_ip=flow, key=flow,
//     local_ip=<tunnel_ip>; OVS assigns the ofport. When the encapsulation
//     changed, the other vpcflow-* port is removed in the same transaction.
//
// So fail_mode=secure and the controller targets are committed before any
// tunnel port exists. Preconditions that Apply must not repair are errors
// that name the fix: a missing bridge, an uplink that is not a port of the
// bridge (or is a port of another one).
//
// Concurrency: reads are fresh `select` transactions (no monitor cache).
// Every write transaction starts with `wait` operations (timeout 0) that
// assert the columns it was planned from are unchanged: the Open_vSwitch
// row's bridges for bridge creation; the Bridge's fail_mode, protocols and
// other_config for settings; the Bridge's controller column (and each
// updated Controller row's timers) for controllers; the Bridge's ports
// column (and the tunnel Interface's type/options when repairing it) for
// the tunnel port. When another writer — a second replica running Apply at
// the same moment, or an operator — got there first, the wait fails (or a
// name index is taken), the transaction is rolled back, and Apply re-reads
// and re-plans, a bounded number of times. Racing Applys therefore never
// create duplicate ports or Controller rows, and each change is committed
// exactly once. A second run finds nothing to do: Result.Changed() is false.
//
// # In-band control (vpcflow host watch)
//
// OVS's in-band control (connection_mode unset or in-band) installs hidden
// flows that outrank every OpenFlow flow and match traffic from any port:
// that is how a fresh host with fail_mode=secure and an empty table first
// reaches a controller that sits behind cloudbr0, but it also lets a guest
// reach the controller's address and port. vpcflow closes it once its own
// management flows are in place and reopens it when they are gone — design
// (b) of DESIGN §3, a host-side watcher that needs no path through
// cloudbr0's flows:
//
//   - every interval the Watcher reads table 0 through the bridge's local
//     management socket (ovs-ofctl -O OpenFlow13 --names dump-flows
//     BRIDGE table=0, honouring OVS_RUNDIR) and the Controller rows through
//     the local ovsdb-server (unix socket);
//   - ManagementFlowsInstalled: the controller's management flows are
//     installed when table 0 has a flow matching in_port=LOCAL and one
//     matching in_port=<uplink> (any cookie);
//   - DecideConnectionMode: installed and some row not out-of-band ->
//     SetConnectionMode(out-of-band) ("in-band control closed: management
//     flows installed"); not installed (a fresh host, or a restarted
//     ovs-vswitchd whose table is empty: on the userspace datapath nothing
//     restores flows) and some row out-of-band -> SetConnectionMode(in-band)
//     ("management flows missing: in-band control opened so the controller
//     can be reached"), so the switch reaches the controller, which
//     reinstalls the flows, after which the watcher closes in-band again.
//
// The watcher never touches flows. SetConnectionMode changes all Controller
// rows of the bridge in one guarded transaction. A new controller target
// added by Apply starts in-band; the watcher closes it on its next pass.
package tunnel
