package compare

import (
	"testing"

	"github.com/shadowtee/shadowtee/internal/importcheck"
)

// TestImports keeps the package off the capture and sending side: it
// sees answers, not how they were captured or sent.
func TestImports(t *testing.T) {
	importcheck.Check(t, importcheck.Only("httpmsg", "httpsyntax"))
}
