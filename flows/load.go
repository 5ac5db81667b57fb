package flows

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// MaxBlueprintBytes bounds a blueprint file (64 MiB), checked before it is
// parsed: ReadFile reads at most one byte more, Parse refuses anything
// larger. The benchmarks' generated blueprint of 200 hosts and 10,000
// VMs (bench/gen) is about 1 MiB.
const MaxBlueprintBytes = 64 << 20

// ReadFile reads a blueprint file, at most MaxBlueprintBytes+1 bytes of it
// (Parse then refuses a file over the limit, without parsing it).
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read blueprint: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxBlueprintBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read blueprint: %w", err)
	}
	return data, nil
}

// Load reads and parses the blueprint file at path (see Parse).
func Load(path string) (*Blueprint, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse decodes a blueprint from data, applies defaults and validates it.
// name is the file name used in error positions and stored in Source.
//
// Decoding is strict: unknown keys, duplicate keys, type mismatches, more
// than one YAML document and an empty document are errors. Every problem
// found is reported, not just the first: on failure the error is a
// *ValidationError whose entries name file:line:column and the field path
// (e.g. "vpcs[0].tiers[1].vms[2].ip").
func Parse(name string, data []byte) (bp *Blueprint, err error) {
	return parse(name, data, false)
}

// parse is Parse; lint (ParseForLint) also keeps the source positions of
// the policy keys.
func parse(name string, data []byte, lint bool) (bp *Blueprint, err error) {
	defer func() {
		// The YAML library is third-party code fed with untrusted input:
		// never let it take the process down.
		if r := recover(); r != nil {
			bp = nil
			err = &ValidationError{Errors: []FieldError{{File: name, Msg: fmt.Sprintf("cannot parse blueprint: internal YAML decoder failure: %v", r)}}}
		}
	}()

	if len(data) > MaxBlueprintBytes {
		return nil, &ValidationError{Errors: []FieldError{{File: name, Msg: fmt.Sprintf("blueprint is larger than %d MiB (%d bytes or more): refused before parsing; is this the right file? (the limit is flows.MaxBlueprintBytes)", MaxBlueprintBytes>>20, len(data))}}}
	}
	if fe := checkBytes(name, data); fe != nil {
		return nil, &ValidationError{Errors: []FieldError{*fe}}
	}
	root, errs := parseDocument(name, data)
	if len(errs) > 0 {
		return nil, &ValidationError{Errors: errs}
	}

	b := &Blueprint{}
	d := &nodeDecoder{file: name, pos: map[string]position{}}
	d.pos[""] = position{root.Line, root.Column}
	d.decode(root, reflect.ValueOf(b).Elem(), "")
	if len(d.errs) == 0 {
		// Cross-check with the YAML library's own strict decoder. The
		// walker above is the authority for positions and field paths;
		// this catches anything the walker might let through.
		var strict Blueprint
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&strict); err != nil {
			d.errs = append(d.errs, yamlErrors(name, data, err)...)
		}
	}
	// Validate even when decoding failed, so one run reports everything;
	// drop validation errors about fields that already failed to decode
	// (they would only repeat the problem as "missing").
	b.Source = name
	b.SetDefaults()
	errs = d.errs
	if d.budget > maxNodes {
		// Pathological input: what was decoded is arbitrary.
		return nil, &ValidationError{Errors: errs}
	}
	errs = d.placeValidation(name, errs, b.validate())
	if len(errs) > 0 {
		sortFieldErrors(errs)
		return nil, &ValidationError{Errors: errs}
	}
	if lint {
		b.lintPos = policyPositions(d.pos)
	}
	return b, nil
}

// parseDocument reads exactly one YAML document and returns its root
// mapping node.
func parseDocument(name string, data []byte) (*yaml.Node, []FieldError) {
	one := func(line, col int, format string, args ...any) []FieldError {
		return []FieldError{{File: name, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, one(0, 0, "blueprint is empty: it must hold one YAML mapping starting with \"version: 1\"")
		}
		return nil, yamlErrors(name, data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := 0
		if err == nil {
			line = extra.Line
		}
		return nil, one(line, 0, "file holds more than one YAML document: a blueprint is exactly one document; remove the extra \"---\" and what follows, or split it into separate files")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, one(doc.Line, doc.Column, "blueprint is empty: it must hold one YAML mapping starting with \"version: 1\"")
	}
	root := doc.Content[0]
	for root.Kind == yaml.AliasNode && root.Alias != nil {
		root = root.Alias
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil, one(root.Line, root.Column, "blueprint is empty: it must hold one YAML mapping starting with \"version: 1\"")
	}
	if root.Kind != yaml.MappingNode {
		return nil, one(root.Line, root.Column, "the top level of a blueprint must be a mapping (version:, hosts:, vpcs:, ...), not %s", kindName(root))
	}
	return root, nil
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlErrors converts an error of the YAML library into positioned
// FieldErrors. The library reports lines only (and, for an unclosed or
// mis-indented collection, the line before the one where the collection
// starts): syntaxPosition corrects the line, finds the column and quotes
// the line, so the message shows what is wrong where.
func yamlErrors(name string, data []byte, err error) []FieldError {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	out := make([]FieldError, 0, len(msgs))
	for _, m := range msgs {
		fe := FieldError{File: name}
		m = strings.TrimPrefix(m, "yaml: ")
		if sm := yamlLineRE.FindStringSubmatch(m); sm != nil {
			fe.Line, _ = strconv.Atoi(sm[1])
			m = sm[2]
			if te == nil { // a syntax error: the line as written
				var excerpt string
				fe.Line, fe.Column, m, excerpt = syntaxPosition(data, fe.Line, m)
				if excerpt != "" {
					m += "; line " + strconv.Itoa(fe.Line) + " reads " + excerpt
				}
			}
		}
		fe.Msg = "invalid YAML: " + m
		out = append(out, fe)
	}
	return out
}

// syntaxPosition maps a YAML syntax error at line (as the library reports
// it) to the line and column of the cause, the message with a hint, and a
// quoted excerpt of that line (tabs and other invisible characters shown
// escaped, long lines cut around the column).
func syntaxPosition(data []byte, line int, msg string) (int, int, string, string) {
	lines := strings.Split(string(data), "\n")
	text := func(l int) string { return strings.TrimSuffix(lines[l-1], "\r") }
	if line < 1 || line > len(lines) {
		return line, 0, msg, ""
	}
	firstNonBlank := func(l string) int { return len(l) - len(strings.TrimLeft(l, " \t")) + 1 }
	col := 0
	switch {
	case strings.HasPrefix(msg, "did not find expected ',' or") || msg == "did not find expected '-' indicator" || msg == "did not find expected key":
		// The library names the line before the collection's start.
		if line < len(lines) && strings.TrimSpace(text(line+1)) != "" {
			line++
		}
		l := text(line)
		col = firstNonBlank(l)
		switch {
		case strings.HasSuffix(msg, "']'") && strings.LastIndex(l, "[") >= 0:
			col = strings.LastIndex(l, "[") + 1
			msg += ": the [ list that starts here is not closed"
		case strings.HasSuffix(msg, "'}'") && strings.LastIndex(l, "{") >= 0:
			col = strings.LastIndex(l, "{") + 1
			msg += ": the { mapping that starts here is not closed"
		default:
			msg += ": an entry of the block that starts here is indented differently from its siblings (or a line below is not a key: value)"
		}
	case strings.Contains(msg, "tab character"):
		col = strings.IndexByte(text(line), '\t') + 1
		msg += ": indent with spaces, not tabs"
	case strings.HasPrefix(msg, "mapping values are not allowed"):
		l := text(line)
		idx := []int{}
		for i := 0; i < len(l); i++ {
			if l[i] == ':' && (i+1 == len(l) || l[i+1] == ' ') {
				idx = append(idx, i)
			}
		}
		switch len(idx) {
		case 0:
			col = firstNonBlank(l)
		case 1:
			col = idx[0] + 1
			msg += ": check this line's indentation against the lines above"
		default:
			col = idx[1] + 1
			msg += ": a value containing \": \" must be quoted"
		}
	case strings.HasPrefix(msg, "found character that cannot start any token"):
		l := text(line)
		col = firstNonBlank(l)
		if i := strings.IndexAny(l, "@`%"); i >= 0 {
			col = i + 1
		}
		msg += ": quote the value"
	case strings.HasPrefix(msg, "found unexpected end of stream"):
		l := text(line)
		col = firstNonBlank(l)
		if i := strings.LastIndexAny(l, "\"'"); i >= 0 {
			col = i + 1
			msg += ": the quoted string that starts here is not closed"
		}
	case strings.HasPrefix(msg, "could not find expected ':'"):
		l := text(line)
		col = len(strings.TrimRight(l, " \t")) + 1
		msg += ": a line in a mapping must be key: value"
	default:
		col = firstNonBlank(text(line))
	}
	if col < 1 {
		col = 1
	}
	return line, col, msg, excerpt(text(line), col)
}

// excerpt quotes a source line, cut to about 60 characters around col.
func excerpt(l string, col int) string {
	const width = 60
	pre, post := "", ""
	if len(l) > width {
		start := max(0, min(col-1-width/2, len(l)-width))
		end := min(len(l), start+width)
		if start > 0 {
			pre = "..."
		}
		if end < len(l) {
			post = "..."
		}
		l = l[start:end]
	}
	return pre + strconv.Quote(l) + post
}

// position is a 1-based line and column in the source file.
type position struct{ line, col int }

// nodeDecoder decodes a yaml.Node tree into the blueprint structs by
// reflection, strictly, recording the source position of every field path
// and collecting every error.
type nodeDecoder struct {
	file   string
	pos    map[string]position
	errs   []FieldError
	budget int // nodes visited; bounds alias expansion
}

// maxNodes bounds the work of decoding one blueprint (alias bombs).
const maxNodes = 1 << 20

// errorf records a decoding error at path. It is located where the index
// locates path (the key, for a collection value), else at node n.
func (d *nodeDecoder) errorf(n *yaml.Node, path, format string, args ...any) {
	p, ok := d.pos[path]
	if !ok || path == "" {
		p = position{n.Line, n.Column}
	}
	d.errs = append(d.errs, FieldError{File: d.file, Line: p.line, Column: p.col, Field: path, Msg: fmt.Sprintf(format, args...)})
}

// errorAt records a decoding error located exactly at node n.
func (d *nodeDecoder) errorAt(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, FieldError{File: d.file, Line: n.Line, Column: n.Column, Field: path, Msg: fmt.Sprintf(format, args...)})
}

// failed reports whether path, or an ancestor of it, failed to decode.
// placeValidation appends the validator's errors to errs, each with the
// file and the line:column of its field, leaving out fields whose decoding
// already failed (their error is already in errs).
func (d *nodeDecoder) placeValidation(name string, errs, fes []FieldError) []FieldError {
	for _, fe := range fes {
		if d.failed(fe.Field) {
			continue
		}
		fe.File = name
		p := d.lookup(fe.Field)
		fe.Line, fe.Column = p.line, p.col
		errs = append(errs, fe)
	}
	return errs
}

func (d *nodeDecoder) failed(path string) bool {
	for _, e := range d.errs {
		if e.Field == "" {
			continue
		}
		if path == e.Field || strings.HasPrefix(path, e.Field+".") || strings.HasPrefix(path, e.Field+"[") {
			return true
		}
	}
	return false
}

// lookup returns the position of path, or of its nearest recorded ancestor
// (a missing key is reported at the mapping that lacks it).
func (d *nodeDecoder) lookup(path string) position {
	for {
		if p, ok := d.pos[path]; ok {
			return p
		}
		if path == "" {
			return position{}
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			path = ""
		} else {
			path = path[:i]
		}
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!null":
			return "null"
		default:
			return fmt.Sprintf("%s %s", strings.TrimPrefix(n.ShortTag(), "!!"), n.Value)
		}
	}
	return "an empty node"
}

// tagWord names a scalar's YAML type in words.
func tagWord(n *yaml.Node) string {
	switch n.ShortTag() {
	case "!!int", "!!float":
		return "number"
	case "!!bool":
		return "boolean"
	case "!!timestamp":
		return "timestamp"
	}
	return strings.TrimPrefix(n.ShortTag(), "!!")
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fieldHints add a "how to fix it" to type errors, by YAML key.
var fieldHints = map[string]string{
	"version":       "use version: 1",
	"revision":      "revision is a whole number 0..16777215",
	"vni":           "vni is a whole number 1..16777215",
	"host_ports":    "ports are whole numbers 1..65535",
	"datapath_id":   `write 16 hex digits in quotes, e.g. "00000000000000a1"`,
	"cidrs":         "write IPv4 prefixes like 192.0.2.0/24",
	"cidr6":         "write an IPv6 prefix like 2001:db8:1:1::/64",
	"ip6":           "write an IPv6 address like 2001:db8:1:1::11",
	"trusted_peers": "write IPv4 addresses like 198.51.100.7",
	"controllers":   "write targets like tcp:192.0.2.250:6653",
}

func hintFor(path string) string {
	key := path
	if i := strings.LastIndex(key, "."); i >= 0 {
		key = key[i+1:]
	}
	if i := strings.Index(key, "["); i >= 0 {
		key = key[:i]
	}
	if h, ok := fieldHints[key]; ok {
		return ": " + h
	}
	return ""
}

func (d *nodeDecoder) decode(n *yaml.Node, v reflect.Value, path string) {
	d.budget++
	if d.budget > maxNodes {
		if d.budget == maxNodes+1 {
			d.errorf(n, path, "blueprint too large or aliases expand too far (more than %d nodes): write it out plainly", maxNodes)
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			d.errorf(n, path, "unresolved alias *%s", n.Value)
			return
		}
		d.decode(n.Alias, v, path)
		return
	}
	isNull := n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
	if v.Type() == uplinkSpecType {
		switch n.Kind {
		case yaml.ScalarNode: // `uplink: eth0`: the scalar form names the NIC.
			d.decode(n, v.Field(0), path)
			return
		case yaml.SequenceNode:
			d.errorf(n, path, "uplink is a NIC (uplink: eth0) or a bond mapping, got a list: write uplink: {name: bond0, bond: [eth0, eth1]}")
			return
		case yaml.MappingNode:
			v.Addr().Interface().(*UplinkSpec).mapping = true
		}
	}
	switch v.Kind() {
	case reflect.Struct:
		if isNull {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.errorf(n, path, "want a mapping of keys, got %s", kindName(n))
			return
		}
		d.decodeStruct(n, v, path)
	case reflect.Pointer: // optional scalars (icmp type/code): nil when absent or null
		if isNull {
			return
		}
		e := reflect.New(v.Type().Elem())
		d.decode(n, e.Elem(), path)
		v.Set(e)
	case reflect.Slice:
		if isNull {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, path, "want a list, got %s: write [a, b] or one \"- item\" per line", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			d.pos[p] = position{item.Line, item.Column}
			d.decode(item, s.Index(i), p)
		}
		v.Set(s)
	case reflect.String:
		if isNull {
			return
		}
		if n.Kind != yaml.ScalarNode && strings.HasSuffix(path, ".ports") {
			d.errorf(n, path, "ports is one port (80) or a range (1024-65535), got %s: write one rule per range", kindName(n))
			return
		}
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, path, "want a string, got %s", kindName(n))
			return
		}
		if strings.HasSuffix(path, "datapath_id") && n.ShortTag() != "!!str" {
			d.errorf(n, path, "datapath_id %s is unquoted, so YAML reads it as a %s: quote it (datapath_id: \"%s\")",
				n.Value, tagWord(n), n.Value)
			return
		}
		if strings.HasSuffix(path, ".ports") && n.ShortTag() != "!!str" && n.ShortTag() != "!!int" {
			d.errorf(n, path, "ports is one port (80) or a range (1024-65535), got %s", kindName(n))
			return
		}
		var s string
		if err := n.Decode(&s); err != nil {
			d.errorf(n, path, "want a string, got %s", kindName(n))
			return
		}
		v.SetString(s)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if isNull {
			return
		}
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			what := kindName(n)
			if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" && n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
				if _, err := strconv.ParseInt(n.Value, 10, 64); err == nil {
					what += " (quoted): remove the quotes"
				}
			}
			d.errorf(n, path, "want a whole number, got %s%s", what, hintFor(path))
			return
		}
		var i int64
		if err := n.Decode(&i); err != nil {
			d.errorf(n, path, "number %s is out of range%s", n.Value, hintFor(path))
			return
		}
		lo, hi := intRange(v.Kind())
		if i < lo || (v.CanInt() && i > hi) || (!v.CanInt() && uint64(i) > uint64(hi)) {
			d.errorf(n, path, "number %s is out of range%s", n.Value, hintFor(path))
			return
		}
		if v.CanInt() {
			v.SetInt(i)
		} else {
			v.SetUint(uint64(i))
		}
	default:
		// Not reachable for the blueprint types; fall back to the library.
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.errorf(n, path, "%v", err)
		}
	}
}

// intRange returns the representable range of an integer kind (restricted
// to int64 inputs).
func intRange(k reflect.Kind) (lo, hi int64) {
	switch k {
	case reflect.Int8:
		return math.MinInt8, math.MaxInt8
	case reflect.Int16:
		return math.MinInt16, math.MaxInt16
	case reflect.Int32:
		return math.MinInt32, math.MaxInt32
	case reflect.Int, reflect.Int64:
		return math.MinInt64, math.MaxInt64
	case reflect.Uint8:
		return 0, math.MaxUint8
	case reflect.Uint16:
		return 0, math.MaxUint16
	case reflect.Uint32:
		return 0, math.MaxUint32
	default:
		return 0, math.MaxInt64
	}
}

// yamlFields maps a struct type's YAML keys to field indexes.
func yamlFields(t reflect.Type) (map[string]int, []string) {
	m := map[string]int{}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "-" {
			continue
		}
		if tag == "" {
			tag = strings.ToLower(f.Name)
		}
		m[tag] = i
		names = append(names, tag)
	}
	return m, names
}

func (d *nodeDecoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	fields, names := yamlFields(v.Type())
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorAt(k, path, "mapping keys must be plain names, got %s", kindName(k))
			continue
		}
		key := k.Value
		if key == "<<" && k.ShortTag() == "!!merge" {
			d.errorAt(k, path, "merge keys (<<) are not supported in blueprints: write the keys out")
			continue
		}
		p := joinPath(path, key)
		if line, dup := seen[key]; dup {
			d.errorAt(k, p, "key %q appears twice in this mapping (first at line %d): keep one", key, line)
			continue
		}
		seen[key] = k.Line
		idx, ok := fields[key]
		if !ok {
			msg := fmt.Sprintf("unknown key %q", key)
			if s := closest(key, names); s != "" {
				msg += fmt.Sprintf(": did you mean %q?", s)
			} else {
				msg += fmt.Sprintf(": valid keys here are %s", strings.Join(names, ", "))
			}
			d.errorAt(k, p, "%s", msg)
			continue
		}
		// Collections are located at their key, scalars at their value.
		if val.Kind == yaml.ScalarNode {
			d.pos[p] = position{val.Line, val.Column}
		} else {
			d.pos[p] = position{k.Line, k.Column}
		}
		d.decode(val, v.Field(idx), p)
	}
}

// closest returns the candidate within edit distance 2 of s, if any.
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if dist := EditDistance(s, c); dist < bestD {
			best, bestD = c, dist
		}
	}
	return best
}

// EditDistance is the Levenshtein distance of two names (bytes; 99 when
// either is longer than 64), for "did you mean" suggestions here and in
// the CLI.
func EditDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func sortFieldErrors(errs []FieldError) {
	sort.SliceStable(errs, func(i, j int) bool {
		if errs[i].Line != errs[j].Line {
			return errs[i].Line < errs[j].Line
		}
		return errs[i].Column < errs[j].Column
	})
}

var uplinkSpecType = reflect.TypeOf(UplinkSpec{})

// UnmarshalYAML accepts both forms of the uplink key for the YAML library's
// strict cross-check: a scalar (the NIC's name) or the bond mapping, whose
// keys it checks itself (the library does not pass KnownFields down to a
// custom unmarshaler).
func (u *UplinkSpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return n.Decode(&u.Name)
	}
	if n.Kind == yaml.MappingNode {
		known, _ := yamlFields(uplinkSpecType)
		for i := 0; i+1 < len(n.Content); i += 2 {
			if _, ok := known[n.Content[i].Value]; !ok {
				return fmt.Errorf("line %d: field %s not found in type flows.UplinkSpec", n.Content[i].Line, n.Content[i].Value)
			}
		}
	}
	type plain UplinkSpec
	u.mapping = n.Kind == yaml.MappingNode
	return n.Decode((*plain)(u))
}

// MarshalYAML writes the scalar form for a single NIC and the mapping form
// for a bond, so a marshalled blueprint parses back the same.
func (u UplinkSpec) MarshalYAML() (any, error) {
	if !u.IsBond() && u.LACP == "" && u.Mode == "" {
		return u.Name, nil
	}
	type plain struct {
		Name    string   `yaml:"name,omitempty"`
		Members []string `yaml:"bond,omitempty"`
		LACP    string   `yaml:"lacp,omitempty"`
		Mode    string   `yaml:"mode,omitempty"`
	}
	return plain{u.Name, u.Members, u.LACP, u.Mode}, nil
}

// MarshalYAML writes a host whose Go caller set only Uplink with that name
// as its uplink key.
func (h Host) MarshalYAML() (any, error) {
	type plain Host
	p := plain(h)
	if p.UplinkSpec.Name == "" {
		p.UplinkSpec.Name = p.Uplink
	}
	return p, nil
}

// setUplinkDefaults fills Uplink from UplinkSpec (or UplinkSpec.Name from a
// Go caller's Uplink) and a bond's defaults: name bond0, lacp off, mode
// active-backup without LACP and balance-tcp with it.
func (h *Host) setUplinkDefaults() {
	u := &h.UplinkSpec
	if u.Name == "" {
		u.Name = h.Uplink
	}
	if u.IsBond() {
		if u.Name == "" {
			u.Name = DefaultBondName
		}
		if u.LACP == "" {
			u.LACP = LACPOff
		}
		if u.Mode == "" {
			u.Mode = BondActiveBackup
			if u.LACP == LACPActive {
				u.Mode = BondBalanceTCP
			}
		}
	}
	h.Uplink = u.Name
}

// SetDefaults fills the defaults of absent optional fields: encapsulation
// vxlan, and management.host_ports DefaultHostPorts when the key is absent
// (an explicit empty list stays empty: no host ports guarded). Host ovsdb
// stays "" (callers apply their own default). Parse and Validate call it.
func (b *Blueprint) SetDefaults() {
	if b.Encapsulation == "" {
		b.Encapsulation = EncapVXLAN
	}
	if b.Management.HostPorts == nil {
		b.Management.HostPorts = append([]uint16(nil), DefaultHostPorts...)
	}
	for i := range b.Hosts {
		b.Hosts[i].setUplinkDefaults()
	}
}

// HostByName returns the host called name, or nil.
func (b *Blueprint) HostByName(name string) *Host {
	for i := range b.Hosts {
		if b.Hosts[i].Name == name {
			return &b.Hosts[i]
		}
	}
	return nil
}

// HostByDPID returns the host whose datapath id is dpid, or nil. It uses
// the parsed Host.DPID, or parses DatapathID if the blueprint was not
// validated.
func (b *Blueprint) HostByDPID(dpid uint64) *Host {
	for i := range b.Hosts {
		h := &b.Hosts[i]
		id := h.DPID
		if id == 0 {
			id, _ = strconv.ParseUint(h.DatapathID, 16, 64)
		}
		if id == dpid && id != 0 {
			return h
		}
	}
	return nil
}

// Hash returns the hex SHA-256 of a canonical encoding of the blueprint's
// content: every YAML field (after defaults, if they were applied) in
// declaration order, list order preserved. Source and the parsed forms are
// not part of it, so the same content loaded from two paths hashes the
// same. Replicas compare it to agree on the blueprint they enforce.
func (b *Blueprint) Hash() string {
	type vm struct {
		Name, Host, Port, MAC, IP string
		Router                    bool     `json:",omitempty"` // omitted for guests: hashes of role-less blueprints are unchanged
		SGs                       []string `json:",omitempty"` // policy keys: omitted when unused, so hashes of policy-free blueprints are unchanged
		IP6                       string   `json:",omitempty"` // IPv6: omitted when unset, so hashes of IPv4-only blueprints are unchanged
	}
	type tier struct {
		Name    string
		Type    string `json:",omitempty"` // omitted when unset: hashes of blueprints without them are unchanged
		VNI     uint32
		VLAN    uint16 `json:",omitempty"`
		CIDR    string
		CIDR6   string `json:",omitempty"` // IPv6: omitted when unset
		Gateway string `json:",omitempty"`
		ACL     string `json:",omitempty"`
		VMs     []vm
	}
	type vpc struct {
		Name    string
		Routing string     `json:",omitempty"`
		ACLs    []canonACL `json:",omitempty"`
		Tiers   []tier
	}
	type host struct {
		Name, DatapathID, TunnelIP, TunnelMAC, Uplink, OVSDB string
		// A bond's members and settings; omitted for a single NIC, so the
		// hashes of bond-less blueprints are unchanged.
		Bond       []string `json:",omitempty"`
		LACP, Mode string   `json:",omitempty"`
	}
	type canon struct {
		Schema         string
		Version        int
		Revision       uint32
		Encapsulation  string
		MgmtCIDRs      []string
		HostPorts      []uint16
		HostPortsSet   bool
		TrustedPeers   []string
		Controllers    []string
		Hosts          []host
		VPCs           []vpc
		SecurityGroups []canonSG `json:",omitempty"`
	}
	c := canon{
		Schema:        "vpcflow-blueprint-hash/1",
		Version:       b.Version,
		Revision:      b.Revision,
		Encapsulation: string(b.Encapsulation),
		MgmtCIDRs:     b.Management.CIDRs,
		HostPorts:     b.Management.HostPorts,
		HostPortsSet:  b.Management.HostPorts != nil,
		TrustedPeers:  b.TrustedPeers,
		Controllers:   b.Controllers,
	}
	for _, h := range b.Hosts {
		up := h.Uplink
		if up == "" {
			up = h.UplinkSpec.Name
		}
		c.Hosts = append(c.Hosts, host{h.Name, h.DatapathID, h.TunnelIP, h.TunnelMAC, up, h.OVSDB,
			h.UplinkSpec.Members, h.UplinkSpec.LACP, h.UplinkSpec.Mode})
	}
	for _, p := range b.VPCs {
		cv := vpc{Name: p.Name, Routing: p.Routing, ACLs: canonACLs(p.ACLs)}
		for _, t := range p.Tiers {
			ct := tier{Name: t.Name, Type: t.Type, VNI: t.VNI, VLAN: t.VLAN, CIDR: t.CIDR, CIDR6: t.CIDR6, Gateway: t.Gateway, ACL: t.ACL}
			for _, m := range t.VMs {
				ct.VMs = append(ct.VMs, vm{m.Name, m.Host, m.Port, m.MAC, m.IP, m.IsRouter(), m.SecurityGroups, m.IP6})
			}
			cv.Tiers = append(cv.Tiers, ct)
		}
		c.VPCs = append(c.VPCs, cv)
	}
	c.SecurityGroups = canonSGs(b.SecurityGroups)
	// Only strings, numbers and bools: Marshal cannot fail.
	data, _ := json.Marshal(c)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// checkBytes reports the first byte YAML forbids (control characters other
// than tab, newline and carriage return; invalid UTF-8) with its line and
// column: the YAML library's reader rejects them without a position.
func checkBytes(name string, data []byte) *FieldError {
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return &FieldError{File: name, Line: line, Column: col, Msg: fmt.Sprintf("invalid UTF-8 byte 0x%02x: the file is corrupt or not text; restore it from a good copy", data[i])}
		case r == '\n':
			line, col = line+1, 0
		case r < 0x20 && r != '\t' && r != '\r', r == 0x7f:
			return &FieldError{File: name, Line: line, Column: col, Msg: fmt.Sprintf("control character 0x%02x is not allowed in YAML: the file is corrupt; restore it from a good copy", r)}
		}
		i += size
		col++
	}
	return nil
}
