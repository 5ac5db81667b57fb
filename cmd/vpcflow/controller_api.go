package main

import (
	"fmt"

	"github.com/vpcflow/vpcflow/controller"
	"github.com/vpcflow/vpcflow/pki"
)

// apiOptions sets the HTTP API's credentials, TLS and the --metrics
// listener (docs/security.md "The HTTP API").
func apiOptions(opts *controller.Options, tokenFile, cert, key, clientCA, metrics string) error {
	if tokenFile != "" {
		tok, err := controller.ReadTokenFile(tokenFile)
		if err != nil {
			return fmt.Errorf("--http-token-file: %w", err)
		}
		opts.HTTPToken = tok
	}
	if cert != "" || key != "" || clientCA != "" {
		cfg, err := pki.APIServerConfig(cert, key, clientCA)
		if err != nil {
			return err
		}
		opts.HTTPTLS = cfg
	}
	if metrics != "off" && metrics != "" && metrics == opts.HTTP {
		return fmt.Errorf("--metrics %s is the --http address: give Prometheus its own address (or off)", metrics)
	}
	if metrics == "" {
		metrics = "off"
	}
	opts.Metrics = metrics
	return nil
}
