package cloudstack

import (
	"context"
	"sync"
	"text/template"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/flows"
)

// Source builds the blueprint from CloudStack on every Fetch: it reads the
// base file (so edits to it apply on the next fetch), fetches every object
// with paging, builds and validates. It satisfies controller.Source.
type Source struct {
	client   *Client
	basePath string
	port     *template.Template
	log      logrus.FieldLogger

	lister PortLister // nil: ports from the template

	mu      sync.Mutex
	skipped map[string]Skip  // the skipped objects last logged
	prev    *flows.Blueprint // the last successful build (ports of unreadable hosts)
}

// PortLister reads one host's VM port names by guest MAC from its OVSDB
// endpoint (tunnel.Client.PortsByMAC on cloudbr0).
type PortLister func(ctx context.Context, endpoint string) (map[string]string, error)

// SetPortLister makes the source name ports from each host's OVSDB
// (external_ids:attached-mac, set by libvirt) instead of the template. Call
// it before the first Fetch.
func (s *Source) SetPortLister(l PortLister) { s.lister = l }

// NewSource returns a source; log receives one line per newly skipped
// object (nil = the standard logger).
func NewSource(client *Client, basePath string, port *template.Template, log logrus.FieldLogger) *Source {
	if log == nil {
		log = logrus.StandardLogger()
	}
	return &Source{client: client, basePath: basePath, port: port, log: log}
}

// Name describes the source for logs and /status (no credentials).
func (s *Source) Name() string {
	return "cloudstack " + s.client.Endpoint() + " (base " + s.basePath + ")"
}

// Build fetches and builds once, returning the whole result (the export
// command writes its YAML).
func (s *Source) Build(ctx context.Context) (*Result, error) {
	base, err := LoadBase(s.basePath)
	if err != nil {
		return nil, err
	}
	objs, err := s.client.Fetch(ctx)
	if err != nil {
		return nil, err
	}
	opts := BuildOptions{PortTemplate: s.port, Endpoint: s.client.Endpoint()}
	if s.lister != nil {
		opts.Ports = s.readPorts(ctx, objs, base)
		s.mu.Lock()
		opts.Previous = s.prev
		s.mu.Unlock()
	}
	res, err := Build(objs, base, opts)
	if err != nil {
		return nil, err
	}
	s.logSkipped(res.Skipped)
	s.mu.Lock()
	s.prev = res.Blueprint
	s.mu.Unlock()
	return res, nil
}

// Fetch implements controller.Source: a validated blueprint or an error
// (HTTP, CloudStack error, partial list, timeout, invalid result). The
// caller keeps its last good policy on an error.
func (s *Source) Fetch(ctx context.Context) (*flows.Blueprint, error) {
	res, err := s.Build(ctx)
	if err != nil {
		return nil, err
	}
	return res.Blueprint, nil
}

// FetchRaw implements controller.RawSource: Fetch, and the YAML that was
// parsed (replicas distribute it, and the fetcher numbers its revision).
func (s *Source) FetchRaw(ctx context.Context) (*flows.Blueprint, []byte, error) {
	res, err := s.Build(ctx)
	if err != nil {
		return nil, nil, err
	}
	return res.Blueprint, res.YAML, nil
}

// readPorts reads the ports of every host that runs a VM, at most 16 hosts
// at a time, each bounded by the client's request timeout. A host whose
// OVSDB cannot be read gets its error (Build keeps earlier port names).
func (s *Source) readPorts(ctx context.Context, o *Objects, base *Base) map[string]HostPorts {
	busy := map[string]bool{}
	for _, vm := range o.VMs {
		busy[vm.HostID] = true
	}
	out := map[string]HostPorts{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, h := range o.Hosts {
		ep := base.OVSDBEndpoint(h.Name)
		if !busy[h.ID] || ep == "" {
			continue
		}
		wg.Add(1)
		go func(name, ep string) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			hctx, cancel := context.WithTimeout(ctx, s.client.cfg.Timeout)
			defer cancel()
			ports, err := s.lister(hctx, ep)
			if err != nil {
				s.log.WithFields(logrus.Fields{"host": name, "ovsdb": ep}).WithError(err).Warn("cloudstack: cannot read the host's port names")
			}
			mu.Lock()
			out[name] = HostPorts{ByMAC: ports, Err: err}
			mu.Unlock()
		}(h.Name, ep)
	}
	wg.Wait()
	return out
}

// logSkipped logs each object that is newly skipped and each that no
// longer is (info: stopped VMs and non-VPC networks are normal), so a poll
// of an unchanged cloud logs nothing.
func (s *Source) logSkipped(skips []Skip) {
	now := make(map[string]Skip, len(skips))
	for _, sk := range skips {
		now[sk.String()] = sk
	}
	s.mu.Lock()
	before := s.skipped
	s.skipped = now
	s.mu.Unlock()
	for _, sk := range skips {
		if _, ok := before[sk.String()]; !ok {
			s.log.WithFields(logrus.Fields{"object": sk.Object, "reason": sk.Reason}).Info("cloudstack object not in the blueprint")
		}
	}
	for key, sk := range before {
		if _, ok := now[key]; !ok {
			s.log.WithFields(logrus.Fields{"object": sk.Object, "reason": sk.Reason}).Info("cloudstack object no longer skipped for this reason")
		}
	}
}
