package controller

import (
	"crypto/x509"

	"github.com/prometheus/client_golang/prometheus"
)

// tlsCollector exports vpcflow_tls_certificate_expiry_timestamp_seconds:
// the notAfter of the certificate this controller presents (--tls-cert, on
// the ssl: OpenFlow listener), as Unix seconds, so an alert can fire
// before it expires (packaging/prometheus/vpcflow-alerts.yaml fires at
// less than 14 days). No series without TLS.
type tlsCollector struct{ c *Controller }

var descCertExpiry = prometheus.NewDesc("vpcflow_tls_certificate_expiry_timestamp_seconds",
	"Expiry time (notAfter, Unix seconds) of the TLS certificate this controller presents to switches (--tls-cert); absent without TLS.",
	[]string{"cert", "subject"}, nil)

func (t *tlsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descCertExpiry }

func (t *tlsCollector) Collect(ch chan<- prometheus.Metric) {
	cfg := t.c.opts.TLS
	if cfg == nil {
		return
	}
	for _, cert := range cfg.Certificates {
		leaf := cert.Leaf
		if leaf == nil && len(cert.Certificate) > 0 {
			var err error
			if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
				continue
			}
		}
		if leaf == nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, float64(leaf.NotAfter.Unix()), "controller", leaf.Subject.CommonName)
	}
}
