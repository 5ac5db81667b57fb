package controller

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Status is the controller's GET /status document.
type Status struct {
	// APIVersion is the HTTP API version (apiversion.go; also in the
	// Vpcflow-API-Version header of every response).
	APIVersion int `json:"api_version"`
	// Version is this controller's vpcflow version (buildinfo).
	Version       string `json:"version"`
	Revision      uint32 `json:"revision"`
	BlueprintHash string `json:"blueprint_hash"`
	Blueprint     string `json:"blueprint"`
	// BlueprintVersion and BlueprintOrigin place the policy in the
	// cluster's order (replica mode; docs/cluster.md#blueprint-distribution).
	BlueprintVersion uint64 `json:"blueprint_version,omitempty"`
	BlueprintOrigin  string `json:"blueprint_origin,omitempty"`
	// BlueprintFetcher is the replica that polls the blueprint source
	// (replica mode with --source cloudstack).
	BlueprintFetcher string         `json:"blueprint_fetcher,omitempty"`
	LoadedAt         time.Time      `json:"loaded_at"`
	LastReloadError  string         `json:"last_reload_error,omitempty"`
	Bridges          []BridgeStatus `json:"bridges"`
	Cluster          *ClusterStatus `json:"cluster,omitempty"`
	// Rejected lists the last refused switch connections (rogue switches).
	Rejected []Rejected `json:"rejected,omitempty"`
}

// Status reports every blueprint host's bridge (connected or not) and every
// connected unknown datapath.
func (c *Controller) Status() Status {
	c.mu.Lock()
	p := c.pol
	st := Status{APIVersion: APIVersion, Version: buildVersion(), Revision: p.bp.Revision, BlueprintHash: p.hash, Blueprint: p.fromName(c),
		LoadedAt: p.loaded, LastReloadError: c.reloadErr, Rejected: append([]Rejected(nil), c.rejected...)}
	if cl := c.opts.Cluster; cl != nil {
		k := p.key(cl.Name())
		st.BlueprintVersion, st.BlueprintOrigin = k.Version, k.Origin
	}
	brs := make(map[uint64]*bridge, len(c.bridges))
	for k, v := range c.bridges {
		brs[k] = v
	}
	c.mu.Unlock()
	if cl := c.opts.Cluster; cl != nil && c.opts.Source != nil {
		st.BlueprintFetcher = cl.Fetcher()
	}
	seen := map[uint64]bool{}
	for i := range p.bp.Hosts {
		h := &p.bp.Hosts[i]
		seen[h.DPID] = true
		if b, ok := brs[h.DPID]; ok {
			st.Bridges = append(st.Bridges, b.status())
			continue
		}
		st.Bridges = append(st.Bridges, BridgeStatus{DatapathID: fmt.Sprintf("%016x", h.DPID), Host: h.Name, Known: true})
	}
	for dpid, b := range brs {
		if !seen[dpid] {
			st.Bridges = append(st.Bridges, b.status())
		}
	}
	sort.Slice(st.Bridges, func(i, j int) bool { return st.Bridges[i].DatapathID < st.Bridges[j].DatapathID })
	for i := range st.Bridges {
		if st.Bridges[i].Owner == "" {
			if d, err := strconv.ParseUint(st.Bridges[i].DatapathID, 16, 64); err == nil {
				st.Bridges[i].Owner = c.ownerOf(d)
			}
		}
	}
	st.Cluster = c.clusterStatus()
	return st
}

func (c *Controller) httpServer() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(c.Status())
	})
	mux.Handle("/metrics", promhttp.HandlerFor(c.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/audit", c.handleAudit)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/reload", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		if !c.authorize(w, r) {
			return
		}
		if err := c.Reload("api"); err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return apiServer(withAPIVersion(mux))
}
