package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/cloudstack"
	"github.com/vpcflow/vpcflow/tunnel"
)

// csFlags are the flags of a CloudStack blueprint source, shared by
// "controller --source cloudstack" and "blueprint export".
type csFlags struct {
	url, base, zone, portTemplate string
	portNames                     string
	apiKey, apiKeyFile            string
	secretKey, secretKeyFile      string
	timeout                       time.Duration
	pageSize                      int
}

func addCloudStackFlags(fs *flag.FlagSet) *csFlags {
	f := &csFlags{}
	fs.StringVar(&f.url, "cloudstack-url", "", "--source cloudstack: the API endpoint, e.g. https://cloud.example.com/client/api")
	fs.StringVar(&f.base, "cloudstack-base", "", "--source cloudstack: the base file (version, management, controllers, trusted_peers, host_defaults, per-host overrides; see docs/cloudstack.md)")
	fs.StringVar(&f.zone, "cloudstack-zone", "", "--source cloudstack: restrict every list call to this zone id")
	fs.StringVar(&f.portTemplate, "port-template", cloudstack.DefaultPortTemplate, "--source cloudstack: Go template naming a NIC's port on cloudbr0 (fields .VM .InstanceName .VMID .NICID .DeviceID .Tier .MAC .MACHex .Router)")
	fs.StringVar(&f.portNames, "port-names", "template", "--source cloudstack: template (--port-template) or ovsdb (read each host's cloudbr0 ports by external_ids:attached-mac from the host's ovsdb endpoint in the base file)")
	fs.StringVar(&f.apiKeyFile, "api-key-file", "", "--source cloudstack: file holding the API key")
	fs.StringVar(&f.secretKeyFile, "secret-key-file", "", "--source cloudstack: file holding the secret key (mode 0600)")
	fs.StringVar(&f.apiKey, "api-key", "", "--source cloudstack: the API key (visible in ps: prefer --api-key-file or CLOUDSTACK_API_KEY)")
	fs.StringVar(&f.secretKey, "secret-key", "", "--source cloudstack: the secret key (visible in ps: prefer --secret-key-file or CLOUDSTACK_SECRET_KEY)")
	fs.DurationVar(&f.timeout, "cloudstack-timeout", cloudstack.DefaultTimeout, "--source cloudstack: bound of one API request (one page)")
	fs.IntVar(&f.pageSize, "cloudstack-page-size", cloudstack.DefaultPageSize, "--source cloudstack: objects per page of list calls")
	return f
}

// credential picks a key from its flag, its file flag or the environment
// (in that order); giving both the flag and the file is an error.
func credential(what, value, file, env string) (string, error) {
	if value != "" && file != "" {
		return "", fmt.Errorf("the %s is given twice (--%s and --%s-file): keep one", what, strings.ReplaceAll(what, " ", "-"), strings.ReplaceAll(what, " ", "-"))
	}
	if value != "" {
		return value, nil
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("the %s file: %v", what, err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", fmt.Errorf("the %s file %s is empty", what, file)
		}
		return s, nil
	}
	return os.Getenv(env), nil
}

// source builds the CloudStack source from the flags.
func (f *csFlags) source(log logrus.FieldLogger, ovsdbTLS *tls.Config) (*cloudstack.Source, error) {
	if f.base == "" {
		return nil, fmt.Errorf("--cloudstack-base is required: the base file holds what CloudStack does not know (see docs/cloudstack.md)")
	}
	apiKey, err := credential("api key", f.apiKey, f.apiKeyFile, "CLOUDSTACK_API_KEY")
	if err != nil {
		return nil, err
	}
	secret, err := credential("secret key", f.secretKey, f.secretKeyFile, "CLOUDSTACK_SECRET_KEY")
	if err != nil {
		return nil, err
	}
	tpl, err := cloudstack.ParsePortTemplate(f.portTemplate)
	if err != nil {
		return nil, err
	}
	client, err := cloudstack.NewClient(cloudstack.Config{URL: f.url, APIKey: apiKey, SecretKey: secret, ZoneID: f.zone,
		PageSize: f.pageSize, Timeout: f.timeout})
	if err != nil {
		return nil, err
	}
	src := cloudstack.NewSource(client, f.base, tpl, log)
	switch f.portNames {
	case "template":
	case "ovsdb":
		src.SetPortLister(func(ctx context.Context, endpoint string) (map[string]string, error) {
			c, err := tunnel.DialTLS(ctx, endpoint, ovsdbTLS)
			if err != nil {
				return nil, err
			}
			defer c.Close()
			return c.PortsByMAC(ctx, tunnel.DefaultBridge)
		})
	default:
		return nil, fmt.Errorf("--port-names %q: want template or ovsdb", f.portNames)
	}
	return src, nil
}
