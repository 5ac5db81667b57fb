package cloudstack

import (
	"context"
	"strings"
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

	mu       sync.Mutex
	lastSkip string // the skipped list last logged
}

// NewSource returns a source; log receives one line per skipped object
// whenever the set of skipped objects changes (nil = the standard logger).
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
	res, err := Build(objs, base, BuildOptions{PortTemplate: s.port, Endpoint: s.client.Endpoint()})
	if err != nil {
		return nil, err
	}
	s.logSkipped(res.Skipped)
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

func (s *Source) logSkipped(skips []Skip) {
	lines := make([]string, len(skips))
	for i, sk := range skips {
		lines[i] = sk.String()
	}
	key := strings.Join(lines, "\n")
	s.mu.Lock()
	changed := key != s.lastSkip
	s.lastSkip = key
	s.mu.Unlock()
	if !changed {
		return
	}
	for _, sk := range skips {
		s.log.WithFields(logrus.Fields{"object": sk.Object, "reason": sk.Reason}).Warn("cloudstack object not in the blueprint")
	}
	s.log.WithField("skipped", len(skips)).Info("cloudstack: skipped objects listed (logged again when the list changes)")
}
