package main

import (
	"flag"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/vpcflow/vpcflow/controller"
	"github.com/vpcflow/vpcflow/pki"
)

// apiClientFlags are the credentials and TLS options of the commands that
// call the controller's API (status, audit): --token-file for the
// mutating requests, and for an https:// --controller the CA that signed
// the controller's certificate and an optional client certificate.
type apiClientFlags struct {
	tokenFile, caFile, certFile, keyFile *string
}

func addAPIClientFlags(fs *flag.FlagSet) *apiClientFlags {
	return &apiClientFlags{
		tokenFile: fs.String("token-file", "", "file holding the API bearer token (the controller's --http-token-file): needed for requests that change something"),
		caFile:    fs.String("ca-file", "", "https:// --controller: the CA the controller's API certificate chains to (e.g. DIR/controllerca/ca.pem)"),
		certFile:  fs.String("cert-file", "", "https:// --controller: a client certificate that authorizes changes (the controller's --http-client-ca)"),
		keyFile:   fs.String("key-file", "", "the key of --cert-file"),
	}
}

// do sends one request to the API; the token, when given, is sent only
// with requests that need it (auth).
func (a *apiClientFlags) do(method, url string, timeout time.Duration, auth bool) (*http.Response, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if *a.caFile != "" || *a.certFile != "" || *a.keyFile != "" {
		if !strings.HasPrefix(url, "https://") {
			return nil, fmt.Errorf("--ca-file, --cert-file and --key-file need an https:// --controller URL (the controller's --http-tls-cert), not %s", url)
		}
		cfg, err := pki.APIClientConfig(*a.caFile, *a.certFile, *a.keyFile)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = cfg
	}
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return nil, err
	}
	if auth && *a.tokenFile != "" {
		tok, err := controller.ReadTokenFile(*a.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return (&http.Client{Timeout: timeout, Transport: tr}).Do(req)
}

// apiRefusal explains a 401/403 answer to a request that needs a credential.
func apiRefusal(status int, body string) string {
	switch status {
	case http.StatusUnauthorized:
		return "the controller refused the credential (401): pass --token-file with the controller's --http-token-file, or --cert-file/--key-file signed by its --http-client-ca"
	case http.StatusForbidden:
		return "the controller allows no changes over its API (403): " + strings.TrimSpace(body)
	}
	return ""
}
