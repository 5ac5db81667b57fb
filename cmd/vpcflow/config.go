package main

// The controller's configuration file (--config): a YAML mapping whose keys
// are the controller's flag names without dashes. It is built from the
// controller's flag.FlagSet itself (every current and future flag is a
// key), checked strictly (unknown or duplicate keys, wrong types and bad
// values are errors naming FILE:LINE:COLUMN, the key and the fix), and
// flags given on the command line override it. docs/operations.md
// "The configuration file".

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vpcflow/vpcflow/flows"
)

// maxConfigFile bounds the configuration file, checked before parsing.
const maxConfigFile = 1 << 20

// configListFlags are comma-separated list flags: the file may give them
// as a YAML sequence too.
var configListFlags = map[string]bool{"join": true, "cluster-allow": true}

// configNotKeys are flags that make no sense in the file.
var configNotKeys = map[string]bool{"config": true, "print-config": true}

// configHidden are flags whose values --print-config does not print.
var configHidden = map[string]bool{"api-key": true, "secret-key": true}

// applyControllerConfig loads path (when set) into fs under the flags
// given on the command line, and with print writes the resulting
// configuration to stdout. ok is false when the command must exit with code.
func applyControllerConfig(fs *flag.FlagSet, path string, print bool) (code int, ok bool) {
	fromFile := map[string]bool{}
	if path != "" {
		var err error
		if fromFile, err = loadConfigFile(fs, path); err != nil {
			fmt.Fprintln(os.Stderr, "vpcflow controller: --config:", err)
			return 2, false
		}
	}
	if print {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for k := range fromFile {
			set[k] = true
		}
		writeConfig(os.Stdout, fs, set)
		return 0, false
	}
	return 0, true
}

// loadConfigFile sets fs's flags from the YAML file at path, except those
// already set on the command line (which are still checked). It returns
// the keys the file holds.
func loadConfigFile(fs *flag.FlagSet, path string) (map[string]bool, error) {
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxConfigFile {
		return nil, fmt.Errorf("%s: larger than %d bytes: a controller configuration is a few dozen keys", path, maxConfigFile)
	}
	at := func(n *yaml.Node, format string, args ...any) error {
		return fmt.Errorf("%s:%d:%d: %s", path, n.Line, n.Column, fmt.Sprintf(format, args...))
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return map[string]bool{}, nil // empty (or only comments): every flag at its default
		}
		return nil, fmt.Errorf("%s: invalid YAML: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: more than one YAML document: remove the extra \"---\" and what follows", path)
	}
	if len(doc.Content) != 1 {
		return map[string]bool{}, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return map[string]bool{}, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, at(root, "the file must be a mapping of flag names to values (e.g. listen: tcp:192.0.2.250:6653), not %s", configNodeWord(root))
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, at(k, "a key must be a flag name, not %s", configNodeWord(k))
		}
		name := k.Value
		if line, dup := seen[name]; dup {
			return nil, at(k, "key %q given twice (first on line %d): keep one", name, line)
		}
		seen[name] = k.Line
		if strings.HasPrefix(name, "-") {
			return nil, at(k, "key %q: write flag names without dashes (%s:)", name, strings.TrimLeft(name, "-"))
		}
		if configNotKeys[name] {
			return nil, at(k, "key %q is a command-line flag only, not a configuration key", name)
		}
		fl := fs.Lookup(name)
		if fl == nil {
			hint := "the keys are the flags of `vpcflow controller -h` without dashes"
			if s := closestConfigKey(fs, name); s != "" {
				hint = fmt.Sprintf("did you mean %q? (%s)", s, hint)
			}
			return nil, at(k, "unknown key %q: %s", name, hint)
		}
		val, err := configValue(fl, v)
		if err != nil {
			return nil, at(v, "key %q: %v", name, err)
		}
		if explicit[name] {
			continue // the command line wins
		}
		if err := fs.Set(name, val); err != nil {
			return nil, at(v, "key %q: %v", name, configValueHint(fl, err))
		}
	}
	keys := map[string]bool{}
	for k := range seen {
		keys[k] = true
	}
	return keys, nil
}

// configValue checks a value node against the flag's type and returns the
// text for flag.Value.Set.
func configValue(fl *flag.Flag, v *yaml.Node) (string, error) {
	for v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	if v.Kind == yaml.SequenceNode && configListFlags[fl.Name] {
		var items []string
		for _, it := range v.Content {
			if it.Kind != yaml.ScalarNode || it.ShortTag() != "!!str" {
				return "", fmt.Errorf("want a list of strings (e.g. [192.0.2.251, 192.0.2.252]), item on line %d is %s", it.Line, configNodeWord(it))
			}
			if strings.Contains(it.Value, ",") {
				return "", fmt.Errorf("list item %q holds a comma: give one address per item", it.Value)
			}
			items = append(items, it.Value)
		}
		return strings.Join(items, ","), nil
	}
	if v.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("want %s, not %s", configTypeWord(fl), configNodeWord(v))
	}
	tag := v.ShortTag()
	if tag == "!!null" {
		return "", fmt.Errorf("no value: give %s or remove the key (its default: %s)", configTypeWord(fl), configDefaultWord(fl))
	}
	var want string
	switch configFlagKind(fl) {
	case "bool":
		want = "!!bool"
	case "int":
		want = "!!int"
	case "float":
		if tag == "!!int" {
			return v.Value, nil
		}
		want = "!!float"
	case "duration":
		if tag == "!!int" || tag == "!!float" {
			return "", fmt.Errorf("%s has no unit: want a Go duration such as \"30s\", \"200ms\" or \"1m\"", v.Value)
		}
		if tag == "!!str" {
			if _, err := time.ParseDuration(v.Value); err != nil {
				return "", fmt.Errorf("%v: want a Go duration such as \"30s\", \"200ms\" or \"1m\"", err)
			}
		}
		want = "!!str"
	default:
		want = "!!str"
	}
	if tag != want {
		if want == "!!str" {
			return "", fmt.Errorf("want a string, not %s: quote it (\"%s\")", configNodeWord(v), v.Value)
		}
		return "", fmt.Errorf("want %s, not %s %q", configTypeWord(fl), configNodeWord(v), v.Value)
	}
	return v.Value, nil
}

// configFlagKind is the type of a flag's value: bool, int, float, duration or
// string (also for flag.Value types that are not flag.Getters).
func configFlagKind(fl *flag.Flag) string {
	g, ok := fl.Value.(flag.Getter)
	if !ok {
		return "string"
	}
	switch g.Get().(type) {
	case bool:
		return "bool"
	case int, int64, uint, uint64:
		return "int"
	case float64:
		return "float"
	case time.Duration:
		return "duration"
	}
	return "string"
}

func configTypeWord(fl *flag.Flag) string {
	switch configFlagKind(fl) {
	case "bool":
		return "true or false"
	case "int":
		return "a whole number"
	case "float":
		return "a number"
	case "duration":
		return "a Go duration such as \"30s\""
	}
	if configListFlags[fl.Name] {
		return "a string or a list of strings"
	}
	return "a string"
}

func configDefaultWord(fl *flag.Flag) string {
	if fl.DefValue == "" {
		return "empty"
	}
	return fl.DefValue
}

func configValueHint(fl *flag.Flag, err error) error {
	if configFlagKind(fl) == "duration" {
		return fmt.Errorf("%v: want a Go duration such as \"30s\", \"200ms\" or \"1m\"", err)
	}
	return err
}

func configNodeWord(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.ShortTag() {
	case "!!int":
		return "a number"
	case "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "null"
	case "!!str":
		return "a string"
	}
	return "a scalar " + n.ShortTag()
}

// closestConfigKey suggests a flag name for a mistyped key (edit distance <= 2,
// or a unique prefix).
func closestConfigKey(fs *flag.FlagSet, name string) string {
	best, bestD := "", 3
	var prefixed []string
	fs.VisitAll(func(f *flag.Flag) {
		if configNotKeys[f.Name] {
			return
		}
		if d := flows.EditDistance(name, f.Name); d < bestD {
			best, bestD = f.Name, d
		}
		if strings.HasPrefix(f.Name, name) {
			prefixed = append(prefixed, f.Name)
		}
	})
	if best == "" && len(prefixed) == 1 {
		return prefixed[0]
	}
	return best
}

// configHeader opens --print-config's output (and the packaged
// /etc/vpcflow/controller.yaml, which is that output).
const configHeader = `# vpcflow controller configuration, e.g. /etc/vpcflow/controller.yaml:
#   vpcflow controller --config /etc/vpcflow/controller.yaml
# (vpcflow-controller.service runs exactly that). Every key is a flag of
# "vpcflow controller -h" without the dashes; a flag given on the command
# line overrides the file. Keys that are commented out ("#key: value")
# show their default. Durations are Go durations ("30s", "200ms").
# Unknown keys, wrong types and bad values stop the controller at start
# with FILE:LINE:COLUMN and the key. The file is read once, at start:
# after a change, systemctl restart vpcflow-controller (SIGHUP, i.e.
# systemctl reload, re-reads the blueprint only).
# Regenerate: vpcflow controller --print-config [--config FILE] [flags]
`

// writeConfig prints every configuration key of fs with its usage as a
// comment: the keys in set with their current value, the others commented
// out with their default.
func writeConfig(w io.Writer, fs *flag.FlagSet, set map[string]bool) {
	var b strings.Builder
	b.WriteString(configHeader)
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		if !configNotKeys[f.Name] {
			names = append(names, f.Name)
		}
	})
	sort.Strings(names)
	for _, name := range names {
		f := fs.Lookup(name)
		b.WriteString("\n")
		for _, line := range configWrap(f.Usage, 74) {
			b.WriteString("# " + line + "\n")
		}
		val := f.Value.String()
		if !set[name] {
			val = f.DefValue
		}
		text := configScalar(f, val)
		if set[name] && configHidden[name] && val != "" {
			b.WriteString("#" + name + ": (set; not printed)\n")
			continue
		}
		if !set[name] {
			b.WriteString("#")
		}
		b.WriteString(name + ": " + text + "\n")
	}
	_, _ = io.WriteString(w, b.String())
}

// configScalar renders a flag value as a YAML scalar of the flag's type.
func configScalar(f *flag.Flag, val string) string {
	switch configFlagKind(f) {
	case "bool", "int", "float":
		return val
	}
	return strconv.Quote(val)
}

func configWrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
