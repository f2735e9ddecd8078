package compare

import (
	"fmt"
	"strings"
)

// Endpoint templates: a request's path, without its query, with the
// segments that name an instance rather than a resource replaced by {id}.
//
// A segment is an id when it looks like one (looksLikeID), or when its
// position holds more distinct values than Config.Cardinality: each rule
// keeps a tree of the segments seen at each position, and a position that
// overflows folds into {id}, all but its heavy hitters (values that carried
// at least a tenth of the position's traffic). Endpoints already made from
// the folded values are merged into the {id} one. Patterns from the
// configuration come first and are taken as written.

const (
	idSegment    = "{id}"
	otherPath    = "{other}"
	otherMethod  = "*"
	maxSegments  = 32 // deeper paths end in "/*"
	heavyHitter  = 10 // a value survives a fold with at least 1/10 of the hits
	minSurvivors = 3  // ... and at least this many hits
)

// looksLikeID reports whether a path segment (or JSON key) looks like an
// identifier: all digits; a UUID; 8 or more hex digits with at least one
// decimal digit; or 16 or more base64 / base64url characters mixing digits
// and letters (random tokens, ULIDs, KSUIDs, Mongo ids).
func looksLikeID[T ~string | ~[]byte](s T) bool {
	n := len(s)
	if n == 0 {
		return false
	}
	var digits, hexLetters, letters, other int
	for i := 0; i < n; i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
			hexLetters++
			letters++
		case c >= 'g' && c <= 'z', c >= 'G' && c <= 'Z':
			letters++
		case c == '-', c == '_', c == '=', c == '+':
		default:
			other++
		}
	}
	switch {
	case digits == n:
		return true
	case isUUID(s):
		return true
	case n >= 8 && digits > 0 && digits+hexLetters == n:
		return true
	case n >= 16 && other == 0 && digits > 0 && letters > 0:
		return true
	}
	return false
}

func isUUID[T ~string | ~[]byte](s T) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// pattern is an endpoint template from the configuration: "/users/{id}",
// "/files/*". A {name} segment matches one segment, a "*" segment one
// segment, and a final "*" any rest, empty included.
type pattern struct {
	text string
	segs []string
}

func parsePattern(p string) (pattern, error) {
	if !strings.HasPrefix(p, "/") {
		return pattern{}, fmt.Errorf("endpoint pattern %q: must start with /", p)
	}
	if strings.ContainsAny(p, "?#") {
		return pattern{}, fmt.Errorf("endpoint pattern %q: the query is not part of a template", p)
	}
	segs := strings.Split(p[1:], "/")
	for i, s := range segs {
		if strings.Contains(s, "*") && s != "*" {
			return pattern{}, fmt.Errorf("endpoint pattern %q: * stands alone in its segment", p)
		}
		if strings.ContainsAny(s, "{}") && !(len(s) > 2 && s[0] == '{' && s[len(s)-1] == '}' && !strings.ContainsAny(s[1:len(s)-1], "{}")) {
			return pattern{}, fmt.Errorf("endpoint pattern %q: segment %d: want {name} for a parameter", p, i+1)
		}
	}
	return pattern{text: p, segs: segs}, nil
}

func (p *pattern) match(path string) bool {
	rest := path[1:]
	for i, ps := range p.segs {
		last := i == len(p.segs)-1
		if ps == "*" && last {
			return true
		}
		seg, r, more := strings.Cut(rest, "/")
		if !(ps == "*" || len(ps) > 2 && ps[0] == '{' || ps == seg) {
			return false
		}
		if last {
			return !more
		}
		if !more {
			// The path ends here; the pattern goes on, and only a final
			// "*" could match nothing.
			return i+2 == len(p.segs) && p.segs[i+1] == "*"
		}
		rest = r
	}
	return false
}

// segNode is a position in a rule's tree of path segments.
type segNode struct {
	lits   map[string]*segNode
	id     *segNode
	hits   uint64 // requests that reached this position
	out    uint64 // requests that went on to a segment after it
	folded bool
}

func (n *segNode) size() int {
	s := 1
	for _, c := range n.lits {
		s += c.size()
	}
	if n.id != nil {
		s += n.id.size()
	}
	return s
}

// originForm returns the path and query of a request target: an
// absolute-form target (http://host/path?q) loses its scheme and authority.
func originForm(target string) string {
	if len(target) == 0 || target[0] == '/' {
		return target
	}
	for _, scheme := range [...]string{"http://", "https://"} {
		if len(target) >= len(scheme) && strings.EqualFold(target[:len(scheme)], scheme) {
			rest := target[len(scheme):]
			if i := strings.IndexAny(rest, "/?"); i >= 0 {
				if rest[i] == '?' {
					return "/" + rest[i:]
				}
				return rest[i:]
			}
			return "/"
		}
	}
	return target
}

// pathOnly returns the path of a request target without query.
func pathOnly(target string) string {
	target = originForm(target)
	for i := 0; i < len(target); i++ {
		if c := target[i]; c == '?' || c == '#' {
			return target[:i]
		}
	}
	return target
}

// templater makes the templates of one rule.
type templater struct {
	patterns []pattern
	card     int
	maxNodes int
	nodes    int
	root     segNode
}

// template appends the template of the path to dst. It reports whether a
// position folded on the way (the rule's endpoints are then re-templated)
// and whether a configured pattern matched.
func (t *templater) template(dst []byte, path string) (out []byte, folded, fromPattern bool) {
	for i := range t.patterns {
		if t.patterns[i].match(path) {
			return append(dst, t.patterns[i].text...), false, true
		}
	}
	if path == "" || path[0] != '/' {
		// "*" (OPTIONS), or a target the framer could not split.
		if len(path) > 64 {
			path = path[:64]
		}
		return append(dst, path...), false, false
	}
	node := &t.root
	rest := path[1:]
	for depth := 0; ; depth++ {
		dst = append(dst, '/')
		if depth == maxSegments {
			return append(dst, '*'), folded, false
		}
		seg, r, more := strings.Cut(rest, "/")
		var lit bool
		node, lit = t.step(node, seg, &folded)
		if lit {
			dst = append(dst, seg...)
		} else {
			dst = append(dst, idSegment...)
		}
		if !more {
			return dst, folded, false
		}
		rest = r
	}
}

// step moves from node over seg, learning it; it reports whether seg stays
// literal in the template. A nil node is beyond what the tree may hold:
// segments are literal from there (bounded by Config.MaxEndpoints).
func (t *templater) step(node *segNode, seg string, folded *bool) (*segNode, bool) {
	c, lit := t.choose(node, seg, folded)
	if c != nil {
		c.hits++
	}
	return c, lit
}

func (t *templater) choose(node *segNode, seg string, folded *bool) (*segNode, bool) {
	if node != nil {
		node.out++
	}
	if looksLikeID(seg) {
		return t.idChild(node), false
	}
	if node == nil {
		return nil, true
	}
	if c, ok := node.lits[seg]; ok {
		return c, true
	}
	if node.folded {
		return t.idChild(node), false
	}
	if len(node.lits) < t.card {
		if t.nodes >= t.maxNodes {
			return nil, true
		}
		if node.lits == nil {
			node.lits = make(map[string]*segNode)
		}
		c := &segNode{}
		node.lits[strings.Clone(seg)] = c
		t.nodes++
		return c, true
	}
	t.fold(node)
	*folded = true
	return t.idChild(node), false
}

func (t *templater) idChild(node *segNode) *segNode {
	if node == nil {
		return nil
	}
	if node.id == nil {
		if t.nodes >= t.maxNodes {
			return nil
		}
		node.id = &segNode{}
		t.nodes++
	}
	return node.id
}

// fold turns a position with too many distinct values into {id}, keeping
// its heavy hitters literal.
func (t *templater) fold(node *segNode) {
	node.folded = true
	for k, c := range node.lits {
		if c.hits < minSurvivors || c.hits*heavyHitter < node.out {
			t.nodes -= c.size()
			delete(node.lits, k)
		}
	}
}

// resolve returns the template that segs (an endpoint's template, split)
// has now, without learning anything.
func (t *templater) resolve(segs []string) string {
	var b strings.Builder
	node := &t.root
	for _, s := range segs {
		b.WriteByte('/')
		switch {
		case s == idSegment || looksLikeID(s):
			b.WriteString(idSegment)
			if node != nil {
				node = node.id
			}
		case node == nil:
			b.WriteString(s)
		case node.lits[s] != nil:
			b.WriteString(s)
			node = node.lits[s]
		case node.folded:
			b.WriteString(idSegment)
			node = node.id
		default:
			b.WriteString(s)
			node = nil
		}
	}
	return b.String()
}
