package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/vpcflow/vpcflow/buildinfo"
	"github.com/vpcflow/vpcflow/controller"
)

// checkAPIVersion refuses a controller whose HTTP API version this CLI does
// not read (controller.APIVersionMin..APIVersion; a response without the
// header is a controller older than API versioning: version 1). url names
// the controller in the error.
func checkAPIVersion(resp *http.Response, url string) error {
	h := strings.TrimSpace(resp.Header.Get(controller.APIVersionHeader))
	if h == "" {
		return nil // version 1
	}
	v, err := strconv.Atoi(h)
	if err != nil || v < 1 {
		return fmt.Errorf("controller at %s sent an unreadable %s header %q: is it a vpcflow controller?", url, controller.APIVersionHeader, h)
	}
	if v < controller.APIVersionMin || v > controller.APIVersion {
		return fmt.Errorf("controller at %s serves HTTP API version %d; this vpcflow CLI (%s) reads API versions %d..%d: use the vpcflow binary of the controller's version (run `vpcflow version` on the controller host; docs/upgrade.md#http-api-version)",
			url, v, buildinfo.Get().Version, controller.APIVersionMin, controller.APIVersion)
	}
	return nil
}

// printProtocolRefusals adds a line to `vpcflow status` when this replica
// refused gossip of an incompatible protocol version: two vpcflow versions
// that cannot form one cluster (docs/upgrade.md).
func printProtocolRefusals(cs *controller.ClusterStatus) {
	if r := cs.ProtocolRefused; r.Messages > 0 || r.Members > 0 {
		fmt.Printf("INCOMPATIBLE REPLICA: this replica (protocol %d, reads %d..%d) refused %d announcements and %d messages of another gossip protocol version; see the log and docs/upgrade.md\n",
			cs.Protocol, cs.ProtocolReadsFrom, cs.Protocol, r.Members, r.Messages)
	}
}
