// Package demo holds the built-in demo blueprint used by `vpcflow demo`.
package demo

import _ "embed"

// Blueprint is examples/demo/blueprint.yaml.
//
//go:embed blueprint.yaml
var Blueprint []byte
