package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	yaml2 "go.yaml.in/yaml/v2"
	"go.yaml.in/yaml/v3"
)

// decoder walks the YAML node tree rather than unmarshalling into structs,
// so that every problem, type errors included, carries the line it is on,
// and so that it can report all problems of a file at once.
type decoder struct {
	file string
	errs Errors
	rule string // label of the rule being decoded, for messages
}

// section is one level of the file: the keys it takes and how to show it.
type section struct {
	name string // "match", "the rule", ...
	keys []string
	// retired keys were valid once: they are handed to the section's
	// decoder, which says what replaced them, and are not offered.
	retired []string
}

var (
	secTop     = section{"the top level", []string{"rules"}, nil}
	secRule    = section{"a rule", []string{"name", "match", "shadow", "percentage", "sampleKey", "hostSuffix", "host", "headers", "compare"}, nil}
	secCompare = section{"compare", []string{"endpoints", "ignoreHeaders", "redactHeaders"}, nil}
	secMatch   = section{"match", []string{"ports", "hosts", "pathPrefix", "methods", "destinations"}, nil}
	secShadow  = section{"shadow", []string{"url", "protocol", "timeout", "idleTimeout", "maxConnections", "maxPending", "maxRequests", "queue", "pipeline", "ordered", "insecureSkipVerify"}, []string{"workers"}}
	secHeaders = section{"headers", []string{"set", "remove", "xForwardedFor"}, nil}
)

// field is a key of a mapping and its value.
type field struct{ k, v *yaml.Node }

// ok reports whether the key was present.
func (f field) ok() bool { return f.k != nil }

const exampleRule = `- {name: web, match: {ports: [8080]}, shadow: {url: "http://web.shadow:8080"}}`

func (d *decoder) errorf(n *yaml.Node, hint, format string, args ...any) {
	line, col := 0, 0
	if n != nil {
		line, col = n.Line, n.Column
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Rule: d.rule, Msg: fmt.Sprintf(format, args...), Hint: hint, col: col})
}

func (d *decoder) decode(data []byte) *File {
	f := &File{Name: d.file}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.errorf(&yaml.Node{Line: 1}, "add rules: with at least one rule, "+exampleRule, "the file is empty")
		} else {
			d.syntax(err, data)
		}
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.errorf(&extra, "keep one document: list every rule under a single rules:", "a second YAML document starts here")
	} else if !errors.Is(err, io.EOF) {
		d.syntax(err, data)
		return nil
	}

	if len(doc.Content) == 0 {
		d.errorf(&yaml.Node{Line: 1}, "add rules: with at least one rule, "+exampleRule, "the file is empty")
		return nil
	}
	top := d.mapping(field{k: &doc, v: doc.Content[0]}, secTop, "rules:\n  "+exampleRule)
	rules := top["rules"]
	items := d.list(rules, "rules", "write rules: followed by a list of rules, "+exampleRule)
	if len(items) == 0 && len(d.errs) == 0 {
		at := rules.k
		if at == nil {
			at = doc.Content[0]
		}
		d.errorf(at, "add at least one rule under rules:, "+exampleRule, "no rules")
	}
	var portLines []int // line of each rule's ports, for the port limit
	for i, n := range items {
		r, pl := d.ruleAt(n, i)
		f.Rules = append(f.Rules, r)
		portLines = append(portLines, pl)
	}
	d.rule = ""
	d.checkFile(f, portLines)
	slices.SortStableFunc(d.errs, func(a, b *Error) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.col - b.col
	})
	return f
}

// yamlLine finds the line in the YAML parser's messages.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (d *decoder) syntax(err error, data []byte) {
	msg, line := strings.TrimPrefix(err.Error(), "yaml: "), 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	hint := "check the indentation and quoting on this line and the one above; quote values that contain \": \" or start with * & ! [ {"
	if msg == "did not find expected key" || msg == "did not find expected '-' indicator" {
		// This parser error names the line where the block began; the
		// line of the token that does not fit is more use. The v2 parser
		// reports that one (0-based, for parser errors).
		var v any
		if m := yamlLine.FindStringSubmatch(fmt.Sprint(yaml2.Unmarshal(data, &v))); m != nil {
			if at, _ := strconv.Atoi(m[1]); at+1 > line {
				msg = fmt.Sprintf("%s: this line does not fit the block that starts on line %d", msg, line)
				line = at + 1
				hint = "indent it like the keys of that block, or quote it"
			}
		}
	}
	if lines := bytes.Split(data, []byte("\n")); line >= 1 && line <= len(lines) {
		if l := lines[line-1]; bytes.Contains(l[:len(l)-len(bytes.TrimLeft(l, " \t"))], []byte("\t")) {
			hint = "indent with spaces: YAML does not allow tabs"
		}
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Msg: "YAML syntax error: " + msg, Hint: hint})
}

// checkFile checks what spans rules: names and the kernel's port limit.
func (d *decoder) checkFile(f *File, portLines []int) {
	names := map[string]int{}
	seen := map[uint16]bool{}
	for i := range f.Rules {
		r := &f.Rules[i]
		if r.Name != "" {
			if first, dup := names[r.Name]; dup {
				d.rule = fmt.Sprintf("rule %q", r.Name)
				d.errorf(&yaml.Node{Line: r.Line}, "give each rule its own name", "the name is already used by the rule on line %d", first)
			} else {
				names[r.Name] = r.Line
			}
		}
		for _, p := range r.Match.Ports {
			if seen[p] {
				continue
			}
			seen[p] = true
			if len(seen) == MaxPorts+1 {
				d.rule = ruleLabel(r.Name, i)
				d.errorf(&yaml.Node{Line: portLines[i]}, "use fewer distinct ports across all rules",
					"port %d is the %dth distinct port of the file, and the kernel filter holds at most %d", p, MaxPorts+1, MaxPorts)
			}
		}
	}
	d.rule = ""
}

func ruleLabel(name string, i int) string {
	if name == "" {
		return fmt.Sprintf("rule %d", i+1)
	}
	return fmt.Sprintf("rule %q", name)
}

// resolve follows aliases to the node they stand for.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names what a node is, for "must be X, not Y" messages.
func describe(n *yaml.Node) string {
	n = resolve(n)
	switch {
	case isNull(n):
		return "nothing"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	}
	return strconv.Quote(n.Value)
}

// mapping returns the keys of a mapping. Unknown and repeated keys are
// reported; an absent or empty value is an empty mapping. It returns nil
// when the value is not a mapping, which it reports.
func (d *decoder) mapping(f field, sec section, example string) map[string]field {
	out := map[string]field{}
	n := resolve(f.v)
	if isNull(n) {
		return out
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "write "+example, "%s must be a mapping of keys to values, not %s", sec.name, describe(n))
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		allowed := fmt.Sprintf("%s takes %s", sec.name, strings.Join(sec.keys, ", "))
		switch {
		case k.Kind != yaml.ScalarNode:
			d.errorf(k, allowed, "a key in %s must be a name, not %s", sec.name, describe(k))
		case k.ShortTag() == "!!merge":
			d.errorf(k, "write the keys out", "merge keys (<<) are not supported")
		case !slices.Contains(sec.keys, k.Value) && !slices.Contains(sec.retired, k.Value):
			if s := closest(k.Value, sec.keys); s != "" {
				d.errorf(k, fmt.Sprintf("write %s; %s", s, allowed), "unknown key %q in %s", k.Value, sec.name)
			} else {
				d.errorf(k, allowed, "unknown key %q in %s", k.Value, sec.name)
			}
		default:
			if prev, dup := out[k.Value]; dup {
				d.errorf(k, "remove one of them", "%s is given twice (first on line %d)", k.Value, prev.k.Line)
				continue
			}
			out[k.Value] = field{k, v}
		}
	}
	return out
}

// list returns the items of a list; an absent or empty value is no items.
func (d *decoder) list(f field, what, hint string) []*yaml.Node {
	n := resolve(f.v)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, hint, "%s must be a list, not %s", what, describe(n))
		return nil
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		out[i] = resolve(c)
	}
	return out
}

// scalar returns the text of a single value. null is "no value".
func (d *decoder) scalar(f field, what, hint string) (*yaml.Node, bool) {
	n := resolve(f.v)
	if isNull(n) {
		d.errorf(f.k, hint, "%s has no value", what)
		return nil, false
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, hint, "%s must be a single value, not %s", what, describe(n))
		return nil, false
	}
	return n, true
}

func (d *decoder) str(f field, what, hint string) (string, bool) {
	n, ok := d.scalar(f, what, hint)
	if !ok {
		return "", false
	}
	return n.Value, true
}

// boolean reads true or false; def is used when the key is absent.
func (d *decoder) boolean(f field, what string, def bool) bool {
	if !f.ok() {
		return def
	}
	hint := "write " + what + ": true or " + what + ": false"
	n, ok := d.scalar(f, what, hint)
	if !ok {
		return def
	}
	var b bool
	if n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		d.errorf(n, hint, "%s must be true or false, not %s", what, describe(n))
		return def
	}
	return b
}

// integer reads a whole number, or reports why not.
func (d *decoder) integer(n *yaml.Node, what, hint string) (int64, bool) {
	var v int64
	if n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		d.errorf(n, hint, "%s %s is not a whole number", what, describe(n))
		return 0, false
	}
	return v, true
}
