// Package importcheck lets a package's tests say which packages its
// non-test files may import, so that layers keep pointing one way.
package importcheck
