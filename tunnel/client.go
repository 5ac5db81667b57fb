package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// errConflict marks a transaction that lost a race: one of its `wait`
// guards failed (a row changed since it was read) or an index (a bridge,
// port or interface name) was taken meanwhile. The caller re-reads and
// retries.
var errConflict = errors.New("concurrent change")

// Client is one OVSDB session to a host's ovsdb-server (database
// Open_vSwitch). It keeps no cache: every read is a fresh `select`
// transaction, so decisions are always made on current rows and every write
// is guarded by `wait` operations on the rows it read. A long-running
// watcher holds one Client; Close ends the session.
type Client struct {
	endpoint string
	ovs      client.Client
}

// CheckEndpoint reports whether endpoint is an OVSDB connection string this
// package can dial: unix:/path, tcp:IP:PORT or ssl:IP:PORT.
func CheckEndpoint(endpoint string) error {
	switch {
	case strings.HasPrefix(endpoint, "unix:") && len(endpoint) > len("unix:"):
		return nil
	case strings.HasPrefix(endpoint, "tcp:") && strings.Contains(endpoint[4:], ":"):
		return nil
	case strings.HasPrefix(endpoint, "ssl:") && strings.Contains(endpoint[4:], ":"):
		return nil
	}
	return fmt.Errorf("OVSDB endpoint %q is not valid: use unix:/path/to/db.sock, tcp:IP:PORT or ssl:IP:PORT", endpoint)
}

// Dial opens an OVSDB session to endpoint (unix:/path | tcp:IP:PORT). For
// ssl: endpoints use DialTLS.
func Dial(ctx context.Context, endpoint string) (*Client, error) {
	return DialTLS(ctx, endpoint, nil)
}

// DialTLS opens an OVSDB session to endpoint; tlsConfig is required for
// ssl: endpoints and ignored otherwise.
func DialTLS(ctx context.Context, endpoint string, tlsConfig *tls.Config) (*Client, error) {
	if err := CheckEndpoint(endpoint); err != nil {
		return nil, err
	}
	if strings.HasPrefix(endpoint, "ssl:") && tlsConfig == nil {
		return nil, fmt.Errorf("OVSDB endpoint %s needs a TLS configuration (client certificate, key and CA); use unix: or tcp: instead", endpoint)
	}
	dbm, err := dbModel()
	if err != nil {
		return nil, fmt.Errorf("OVSDB model: %w", err)
	}
	opts := []client.Option{client.WithEndpoint(endpoint)}
	if tlsConfig != nil {
		opts = append(opts, client.WithTLSConfig(tlsConfig))
	}
	ovs, err := client.NewOVSDBClient(dbm, opts...)
	if err != nil {
		return nil, fmt.Errorf("OVSDB client for %s: %w", endpoint, err)
	}
	if err := ovs.Connect(ctx); err != nil {
		return nil, fmt.Errorf("cannot connect to ovsdb-server at %s (is it running, and is that the right --ovsdb endpoint?): %w", endpoint, err)
	}
	return &Client{endpoint: endpoint, ovs: ovs}, nil
}

// Endpoint is the OVSDB endpoint the client was dialled with.
func (c *Client) Endpoint() string { return c.endpoint }

// Connected reports whether the session is still up.
func (c *Client) Connected() bool { return c.ovs.Connected() }

// Close ends the session.
func (c *Client) Close() { c.ovs.Close() }

func (c *Client) dbModel() model.DatabaseModel { return c.ovs.Cache().DatabaseModel() }

// selectOp selects whole rows of table matching all conditions (all rows
// when there are none).
func selectOp(table string, where ...ovsdb.Condition) ovsdb.Operation {
	return ovsdb.Operation{Op: ovsdb.OperationSelect, Table: table, Where: where}
}

func nameIs(name string) ovsdb.Condition {
	return ovsdb.NewCondition("name", ovsdb.ConditionEqual, name)
}

func uuidIs(uuid string) ovsdb.Condition {
	return ovsdb.NewCondition("_uuid", ovsdb.ConditionEqual, ovsdb.UUID{GoUUID: uuid})
}

// decodeRows turns selected rows into models of type T.
func decodeRows[T any](c *Client, table string, rows []ovsdb.Row) ([]*T, error) {
	out := make([]*T, 0, len(rows))
	for i := range rows {
		uuid := ""
		if u, ok := rows[i]["_uuid"].(ovsdb.UUID); ok {
			uuid = u.GoUUID
		}
		m, err := model.CreateModel(c.dbModel(), table, &rows[i], uuid)
		if err != nil {
			return nil, fmt.Errorf("decode %s row: %w", table, err)
		}
		t, ok := m.(*T)
		if !ok {
			return nil, fmt.Errorf("decode %s row: unexpected model type %T", table, m)
		}
		out = append(out, t)
	}
	return out, nil
}

// read runs ops (all selects) in one transaction and returns each op's rows.
func (c *Client) read(ctx context.Context, ops []ovsdb.Operation) ([][]ovsdb.Row, error) {
	res, err := c.ovs.Transact(ctx, ops...)
	if err != nil {
		return nil, fmt.Errorf("read from ovsdb-server at %s: %w", c.endpoint, err)
	}
	if _, err := ovsdb.CheckOperationResults(res, ops); err != nil {
		return nil, fmt.Errorf("read from ovsdb-server at %s: %w: %s", c.endpoint, err, resultDetails(res))
	}
	out := make([][]ovsdb.Row, len(ops))
	for i := range ops {
		out[i] = res[i].Rows
	}
	return out, nil
}

// commit runs ops as one transaction. A failed wait guard or a taken
// index comes back wrapped in errConflict.
func (c *Client) commit(ctx context.Context, ops []ovsdb.Operation) error {
	res, err := c.ovs.Transact(ctx, ops...)
	if err != nil {
		return fmt.Errorf("transaction on ovsdb-server at %s: %w", c.endpoint, err)
	}
	opErrs, err := ovsdb.CheckOperationResults(res, ops)
	if err == nil {
		return nil
	}
	conflict := false
	all := []error{err}
	for _, e := range opErrs {
		all = append(all, e)
	}
	for _, e := range all {
		var to *ovsdb.TimedOut
		var cv *ovsdb.ConstraintViolation
		if errors.As(e, &to) || errors.As(e, &cv) {
			conflict = true
		}
	}
	details := resultDetails(res)
	if conflict {
		return fmt.Errorf("%w: %s", errConflict, details)
	}
	return fmt.Errorf("transaction on ovsdb-server at %s failed: %s", c.endpoint, details)
}

func resultDetails(res []ovsdb.OperationResult) string {
	var parts []string
	for _, r := range res {
		if r.Error != "" {
			parts = append(parts, strings.TrimSpace(r.Error+": "+r.Details))
		}
	}
	return strings.Join(parts, "; ")
}
