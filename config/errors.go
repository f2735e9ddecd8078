package config

import (
	"fmt"
	"strings"
)

// Error is one problem found in a rules file. Its text names the file and
// line, the rule when there is one, what is wrong and what to write instead,
// so that it can be shown to the user as it is:
//
//	rules.yaml:7: rule "httpbin": percentage 150 is outside 0..100 (write a number such as 100 or 12.5)
type Error struct {
	File string // as given to Load or Parse
	Line int    // 1-based; 0 when the problem has no line
	Rule string // `rule "name"` or `rule 2`; "" for problems outside a rule
	Msg  string // what is wrong
	Hint string // what to write instead; may be empty

	col int // orders problems found on one line
}

// Error returns the message in the form "file:line: rule: msg (hint)".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Rule != "" {
		b.WriteString(e.Rule)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString(" (")
		b.WriteString(e.Hint)
		b.WriteByte(')')
	}
	return b.String()
}

// maxReported bounds how many problems Errors prints: past a dozen, the
// rest are usually consequences of the first ones.
const maxReported = 20

// Errors is every problem found in a rules file, in file order. Parse and
// Load return it (as an error) when there is at least one.
type Errors []*Error

// Error returns one problem per line.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i == maxReported {
			fmt.Fprintf(&b, "\n%s: %d more problems not shown", e.File, len(es)-i)
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap returns the problems, so that errors.As finds each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// closest returns the word of allowed nearest to key, or "" when none is
// near enough to be a likely typo. Case is ignored first: "pathprefix" is
// "pathPrefix" written in the wrong case.
func closest(key string, allowed []string) string {
	limit := 2
	if len(key) <= 4 {
		limit = 1
	}
	best, bestDist := "", limit+1
	for _, a := range allowed {
		if strings.EqualFold(a, key) {
			return a
		}
		if d := editDistance(strings.ToLower(key), strings.ToLower(a)); d < bestDist {
			best, bestDist = a, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
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
