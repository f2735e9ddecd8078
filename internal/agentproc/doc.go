// Package agentproc runs `shadowtee attach` as a child process inside a
// network namespace, the way the demo and the end-to-end tests use it: start,
// wait until it reports ready, stop with SIGTERM like an operator would.
package agentproc
