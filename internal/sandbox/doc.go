// Package sandbox builds throwaway network namespaces joined by veth pairs:
// the hosts of the end-to-end tests and of `shadowtee demo`. Everything it
// creates is removed by Close; nothing it does touches the host's own
// interfaces, addresses or routes.
package sandbox
