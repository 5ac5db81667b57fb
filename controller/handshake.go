package controller

// Admission of switch connections: what a peer can make the controller do
// before it is known to be anyone.
//
//   - At most Options.MaxHandshakes connections are between accept and a
//     completed handshake (TLS, HELLO, FEATURES, identity check, PORT_DESC);
//     a connection beyond that is closed at once and counted
//     (vpcflow_handshakes_refused_total, one log line per 10 s). Each
//     handshake ends after Options.HandshakeTimeout.
//   - The identity (TLS certificate name against the datapath id's host;
//     a datapath id connected elsewhere) is checked as soon as the
//     FEATURES_REPLY names the datapath id, before PORT_DESC is requested.
//   - Everything read before that is bounded (ofOptions): the messages
//     before FEATURES_REPLY, PORT_DESC (1 MiB, 64 parts), no PACKET_IN
//     queued.
//   - A reload re-checks every connected switch's certificate against the
//     new blueprint: a connection that no longer matches is closed before
//     any bridge can act on the new policy, and reported like a refused
//     connect (/status rejected[]).

import (
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/flows"
)

// refusal is a connection refused, to report with Controller.reject.
type refusal struct {
	remote string
	dpid   uint64
	why    string
}

// identityRefusal is a handshake ended by the identity check.
type identityRefusal struct {
	dpid uint64
	why  string
}

func (r *identityRefusal) Error() string { return "switch connection refused: " + r.why }

// admitHandshake takes a handshake slot, or reports (rate-limited) that all
// are busy: the caller then closes the connection.
func (c *Controller) admitHandshake(remote string) bool {
	select {
	case c.hsSem <- struct{}{}:
		return true
	default:
	}
	c.metrics.hsRefused.Inc()
	n := c.hsRefused.Add(1)
	now := time.Now().UnixNano()
	last := c.hsLogAt.Load()
	if now-last >= int64(10*time.Second) && c.hsLogAt.CompareAndSwap(last, now) {
		c.log.WithFields(logrus.Fields{"remote": remote, "max_handshakes": cap(c.hsSem), "refused_total": n}).
			Warn("too many switch handshakes in progress: new connections are closed at once until some complete or time out " +
				"(a flood of half-open connections, or more switches connecting together than --max-handshakes; switches retry)")
	}
	return false
}

func (c *Controller) releaseHandshake() { <-c.hsSem }

// ofOptions are the OpenFlow runtime options for a switch connection from
// remote presenting certificate name identity ("" without TLS).
func (c *Controller) ofOptions(remote, identity string) ofOptions {
	o := ofDefaultOptions()
	o.checkDPID = func(dpid uint64) error {
		c.mu.Lock()
		why := c.checkIdentityLocked(dpid, remote, identity)
		c.mu.Unlock()
		if why != "" {
			return &identityRefusal{dpid: dpid, why: why}
		}
		return nil
	}
	return o
}

// identityMismatch says why a switch with certificate name identity may not
// hold datapath id dpid under bp ("" = it may; without TLS there is nothing
// to check). The certificate must name the datapath id's host, and a
// certificate naming a blueprint host holds only that host's datapath id.
func identityMismatch(bp *flows.Blueprint, dpid uint64, identity string) string {
	if identity == "" {
		return ""
	}
	if h := bp.HostByDPID(dpid); h != nil && h.Name != identity {
		return fmt.Sprintf("certificate names %q but datapath id %016x belongs to host %s", identity, dpid, h.Name)
	}
	if h := bp.HostByName(identity); h != nil && h.DPID != dpid {
		return fmt.Sprintf("certificate names host %s, whose datapath id is %016x, but the switch claims datapath id %016x", identity, h.DPID, dpid)
	}
	return ""
}

// recheckIdentities closes every connected switch whose certificate does not
// match the policy just set (a reload that gave its datapath id to another
// host, or its host another datapath id). Called with c.mu held, in the same
// critical section that sets the policy, so no bridge acts on the new policy
// over a connection certified for another host. The caller reports the
// returned refusals (c.reject) after unlocking.
func (c *Controller) recheckIdentities() []refusal {
	var out []refusal
	for dpid, b := range c.bridges {
		why := identityMismatch(c.pol.bp, dpid, b.identity)
		if why == "" || b.conn.Err() != nil {
			continue
		}
		b.conn.closeWith(fmt.Errorf("blueprint reload: %s: connection closed", why))
		out = append(out, refusal{remote: b.conn.RemoteAddr(), dpid: dpid, why: "after blueprint reload: " + why})
	}
	return out
}
