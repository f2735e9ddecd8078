// Package deploy holds the Kubernetes manifests of shadowtee (base/, the
// agent as a DaemonSet; monitoring/, a PodMonitor; examples/) and renders
// them the way `kubectl apply -k` would, so that tests can check them and
// run the agent exactly as its container runs it.
//
// Render implements the part of kustomize that these manifests use, and
// refuses the rest, so that a manifest never depends on a feature the tests
// do not see:
//
//   - resources: YAML files (several documents each) and directories that
//     hold a kustomization.yaml, recursively;
//   - namespace: set on every namespaced object of the kustomization,
//     including those of its resources and generators;
//   - configMapGenerator: files only (the key is the file's base name),
//     behavior create or replace, and options.disableNameSuffixHash, which
//     must be true (a ConfigMap whose name changes with its content cannot
//     be reloaded in place).
package deploy
