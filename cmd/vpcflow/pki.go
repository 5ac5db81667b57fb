package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vpcflow/vpcflow/pki"
)

func init() {
	register("pki", "create a CA and controller/host certificates for TLS (init, sign)", runPKI)
}

func runPKI(args []string) int {
	if len(args) == 0 || (args[0] != "init" && args[0] != "sign") {
		if len(args) > 0 && !isHelp(args[0]) {
			return unknownSub(os.Stderr, "pki", args[0])
		}
		fmt.Fprintln(os.Stderr, "usage: vpcflow pki init --dir DIR\n       vpcflow pki sign --dir DIR --type switch|controller --name NAME [--ip IP,...]\n\n"+
			"init creates two CAs, as ovs-pki does: DIR/controllerca (issues controller certificates; switches trust only it)\n"+
			"and DIR/switchca (issues hypervisor certificates; controllers trust only it). sign issues DIR/NAME.pem and\n"+
			"DIR/NAME.key (CommonName NAME: use the blueprint host name for a hypervisor — the controller refuses a switch\n"+
			"whose certificate names another host) and never overwrites a file.")
		if len(args) > 0 {
			return 0 // -h
		}
		return 2
	}
	fs := flag.NewFlagSet("pki "+args[0], flag.ContinueOnError)
	dir := fs.String("dir", "", "PKI directory (required)")
	name := fs.String("name", "", "sign: certificate name (host name or replica name)")
	kind := fs.String("type", "", "sign: switch (a hypervisor) or controller (a replica)")
	ips := fs.String("ip", "", "sign: comma-separated IP addresses for the certificate")
	days := fs.Int("days", 825, "validity in days")
	if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "vpcflow pki: --dir is required")
		return 2
	}
	validity := time.Duration(*days) * 24 * time.Hour
	if args[0] == "init" {
		if err := pki.Init(*dir, validity); err != nil {
			fmt.Fprintln(os.Stderr, "vpcflow pki init:", err)
			return 1
		}
		fmt.Printf("CAs created in %s: switches trust %s (ovs-vsctl set-ssl HOST.key HOST.pem %s), controllers trust %s (--tls-ca); keep %s and %s secret\n",
			*dir, pki.TrustFor(*dir, pki.Controller), pki.TrustFor(*dir, pki.Controller), pki.TrustFor(*dir, pki.Switch),
			filepath.Join(*dir, pki.ControllerCA, pki.CAKey), filepath.Join(*dir, pki.SwitchCA, pki.CAKey))
		return 0
	}
	k, err := pki.ParseKind(*kind)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow pki sign: --type:", err)
		return 2
	}
	if err := pki.CheckName(*name); err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow pki sign:", err)
		return 2
	}
	var addrs []net.IP
	for _, s := range strings.Split(*ips, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		ip := net.ParseIP(s)
		if ip == nil {
			fmt.Fprintf(os.Stderr, "vpcflow pki sign: %q is not an IP address\n", s)
			return 2
		}
		addrs = append(addrs, ip)
	}
	cert, key, err := pki.Sign(*dir, *name, k, addrs, validity)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow pki sign:", err)
		return 1
	}
	fmt.Printf("%s certificate %s, key %s (CommonName %s); its peers trust %s\n", k, cert, key, *name, pki.TrustFor(*dir, k))
	return 0
}
