package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/vpcflow/vpcflow/pki"
)

func init() {
	register("pki", "create a CA and controller/host certificates for TLS (init, sign)", runPKI)
}

func runPKI(args []string) int {
	if len(args) == 0 || (args[0] != "init" && args[0] != "sign") {
		fmt.Fprintln(os.Stderr, "usage: vpcflow pki init --dir DIR\n       vpcflow pki sign --dir DIR --name NAME [--ip IP,...]\n\n"+
			"init creates DIR/ca.pem and DIR/ca.key; sign issues DIR/NAME.pem and DIR/NAME.key (CommonName NAME: use the\n"+
			"blueprint host name for a hypervisor — the controller refuses a switch whose certificate names another host).")
		return 2
	}
	fs := flag.NewFlagSet("pki "+args[0], flag.ContinueOnError)
	dir := fs.String("dir", "", "PKI directory (required)")
	name := fs.String("name", "", "sign: certificate name (host name or replica name)")
	ips := fs.String("ip", "", "sign: comma-separated IP addresses for the certificate")
	days := fs.Int("days", 825, "validity in days")
	if err := fs.Parse(args[1:]); err != nil {
		return parseExit(err)
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
		fmt.Printf("CA created: %s/%s (keep %s/%s secret)\n", *dir, pki.CACert, *dir, pki.CAKey)
		return 0
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
	cert, key, err := pki.Sign(*dir, *name, addrs, validity)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcflow pki sign:", err)
		return 1
	}
	fmt.Printf("certificate %s, key %s (CommonName %s)\n", cert, key, *name)
	return 0
}
