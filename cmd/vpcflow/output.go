package main

// The one output flag, -o table|json|yaml (docs/cli.md), of status, audit,
// explain, doctor, validate and compile, and the structured documents of
// the commands that had none (validate, compile).

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/vpcflow/vpcflow/flows"
)

// outputValue is the -o flag's value: the command's human format ("table"
// or "text": both spellings are accepted), json or yaml.
type outputValue struct {
	p     *string
	human string
}

func (o *outputValue) String() string {
	if o == nil || o.p == nil {
		return ""
	}
	return *o.p
}

func (o *outputValue) Set(s string) error {
	switch s {
	case "table", "text":
		*o.p = o.human
	case "json", "yaml":
		*o.p = s
	default:
		return fmt.Errorf("want %s, json or yaml", o.human)
	}
	return nil
}

// addOutputFlag registers -o and --output (human is the default: "table"
// or "text") and, as deprecated aliases of the same value, the command's
// older flags (e.g. --format). It returns the chosen format after parsing:
// human, "json" or "yaml".
func addOutputFlag(fs *flag.FlagSet, human string, deprecated ...string) *string {
	p := new(string)
	*p = human
	v := &outputValue{p: p, human: human}
	fs.Var(v, "o", "output `format`: "+human+", json or yaml")
	fs.Var(v, "output", "output `format` (same as -o)")
	for _, d := range deprecated {
		fs.Var(v, d, "deprecated: use -o (same `format` values)")
	}
	return p
}

// addDeprecatedJSONFlag registers a deprecated boolean --NAME that selects
// -o json (status --json).
func addDeprecatedJSONFlag(fs *flag.FlagSet, name string, format *string) {
	fs.BoolFunc(name, "deprecated: use -o json", func(s string) error {
		switch s {
		case "true":
			*format = "json"
		case "false":
		default:
			return errors.New("want true or false")
		}
		return nil
	})
}

// writeStructured writes v as indented JSON or as YAML (format "json" or
// "yaml").
func writeStructured(w io.Writer, format string, v any) error {
	if format == "yaml" {
		return writeYAML(w, v)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeYAML writes v as YAML with the keys and order of its JSON encoding
// (the JSON field names are the stable ones): JSON is decoded into a YAML
// node tree, which is then written in block style.
func writeYAML(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		return err
	}
	blockStyle(&n)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	_, err = w.Write(b.Bytes())
	return err
}

// blockStyle clears the flow and quoting styles the JSON text gave the
// nodes. Strings stay double-quoted where a YAML 1.1 reader (PyYAML, older
// tools) could take them for something else: yes/no/on/off, and anything
// starting with a digit (datapath ids, MACs like 52:54:00:11:01:01, which
// YAML 1.1 reads as a base-60 number, addresses); the encoder quotes the
// rest where YAML 1.2 needs it.
func blockStyle(n *yaml.Node) {
	n.Style = 0
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && yaml11Ambiguous(n.Value) {
		n.Style = yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}

func yaml11Ambiguous(s string) bool {
	switch strings.ToLower(s) {
	case "", "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~":
		return true
	}
	return s[0] >= '0' && s[0] <= '9' || s[0] == '.' || s[0] == '+' || s[0] == '-'
}

// validateDoc is `vpcflow validate -o json|yaml`.
type validateDoc struct {
	File     string          `json:"file"`
	Valid    bool            `json:"valid"`
	Revision uint32          `json:"revision,omitempty"`
	Hosts    int             `json:"hosts"`
	VPCs     int             `json:"vpcs"`
	Tiers    int             `json:"tiers"`
	VMs      int             `json:"vms"`
	Errors   []lintLoadError `json:"errors,omitempty"`
}

// loadErrors converts a blueprint load error into the document's errors.
func loadErrors(file string, err error) []lintLoadError {
	var ve *flows.ValidationError
	if !errors.As(err, &ve) {
		return []lintLoadError{{File: file, Message: err.Error()}}
	}
	out := make([]lintLoadError, 0, len(ve.Errors))
	for _, fe := range ve.Errors {
		out = append(out, lintLoadError{File: fe.File, Line: fe.Line, Column: fe.Column, Field: fe.Field, Message: fe.Msg})
	}
	return out
}

// loadExit is the exit code of a blueprint that did not load: 1 when it
// was read and is invalid (a finding), 2 when it could not be read.
func loadExit(err error) int {
	var ve *flows.ValidationError
	if errors.As(err, &ve) {
		return exitFinding
	}
	return exitUsage
}

// compileDoc is `vpcflow compile -o json|yaml`.
type compileDoc struct {
	Blueprint string        `json:"blueprint"`
	Host      string        `json:"host"`
	Revision  uint32        `json:"revision"`
	Flows     []compileFlow `json:"flows"`
}

type compileFlow struct {
	Table     int    `json:"table"`
	TableName string `json:"table_name"`
	Priority  int    `json:"priority"`
	Cookie    string `json:"cookie"`
	Category  string `json:"category"`
	Note      string `json:"note,omitempty"`
	Match     string `json:"match"`
	Actions   string `json:"actions"`
	Flow      string `json:"flow"` // the whole flow in ovs-ofctl add-flow syntax
}

func newCompileDoc(file, host string, bp *flows.Blueprint, fl []flows.Flow) compileDoc {
	sorted := append([]flows.Flow(nil), fl...)
	flows.SortFlows(sorted)
	doc := compileDoc{Blueprint: file, Host: host, Revision: bp.Revision, Flows: make([]compileFlow, 0, len(sorted))}
	for i := range sorted {
		f := &sorted[i]
		doc.Flows = append(doc.Flows, compileFlow{Table: int(f.Table), TableName: flows.TableName(f.Table), Priority: int(f.Priority),
			Cookie: f.Cookie.String(), Category: f.Cookie.Category().String(), Note: f.Note,
			Match: f.Match.String(), Actions: f.ActionsString(), Flow: f.String()})
	}
	return doc
}
