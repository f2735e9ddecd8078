package importcheck

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Check reports, as a test error, each import of the non-test Go files in
// the current directory (the package under test) that allowed refuses.
func Check(t testing.TB, allowed func(path string) bool) {
	t.Helper()
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), n, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !allowed(p) {
				t.Errorf("%s imports %s", n, p)
			}
		}
	}
}

// Module is the project's import path prefix.
const Module = "github.com/shadowtee/shadowtee/"

// Only allows the standard library, anything outside the project but
// cilium's, and of the project the packages named (relative to Module).
func Only(pkgs ...string) func(string) bool {
	return func(p string) bool {
		if strings.HasPrefix(p, "github.com/cilium/") {
			return false
		}
		if rest, ok := strings.CutPrefix(p, Module); ok {
			for _, q := range pkgs {
				if rest == q {
					return true
				}
			}
			return false
		}
		return true
	}
}
