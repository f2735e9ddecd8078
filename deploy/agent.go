package deploy

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// Names of the agent's objects in the base.
const (
	AgentNamespace = "shadowtee-system"
	AgentName      = "shadowtee"       // the DaemonSet and its container
	RulesConfigMap = "shadowtee-rules" // holds rules.yaml
	Entrypoint     = "/shadowtee"      // the image's ENTRYPOINT
)

// Find returns the object of that kind, namespace and name.
func Find(objs []Object, kind, namespace, name string) (*Object, error) {
	for i := range objs {
		if o := &objs[i]; o.Kind == kind && o.Namespace == namespace && o.Name == name {
			return o, nil
		}
	}
	id := Object{Kind: kind, Namespace: namespace, Name: name}
	return nil, fmt.Errorf("%s: %w", id.ID(), errNotFound)
}

// DaemonSet returns the DaemonSet of that namespace and name.
func DaemonSet(objs []Object, namespace, name string) (*appsv1.DaemonSet, error) {
	o, err := Find(objs, "DaemonSet", namespace, name)
	if err != nil {
		return nil, err
	}
	return o.Typed.(*appsv1.DaemonSet), nil
}

// ConfigMap returns the ConfigMap of that namespace and name.
func ConfigMap(objs []Object, namespace, name string) (*corev1.ConfigMap, error) {
	o, err := Find(objs, "ConfigMap", namespace, name)
	if err != nil {
		return nil, err
	}
	return o.Typed.(*corev1.ConfigMap), nil
}

// Agent is how the agent's container runs: enough to start the binary the
// same way outside Kubernetes.
type Agent struct {
	// Args are the arguments of the shadowtee binary (the image's entry
	// point), as in the container spec.
	Args []string
	// Env is the container's environment, "NAME=value", in spec order.
	Env []string
	// ConfigDir is where the rules ConfigMap is mounted.
	ConfigDir string
	// Files are the ConfigMap's data: the files the agent finds in
	// ConfigDir, by name.
	Files map[string]string
}

// AgentSpec returns how the agent's container runs in the rendered
// objects. Environment values must be literal (no valueFrom), so that
// the agent runs the same everywhere.
func AgentSpec(objs []Object) (*Agent, error) {
	ds, err := DaemonSet(objs, AgentNamespace, AgentName)
	if err != nil {
		return nil, err
	}
	spec := &ds.Spec.Template.Spec
	i := slices.IndexFunc(spec.Containers, func(c corev1.Container) bool { return c.Name == AgentName })
	if i < 0 {
		return nil, fmt.Errorf("DaemonSet %s: no container %s", ds.Name, AgentName)
	}
	c := &spec.Containers[i]
	a := &Agent{Args: slices.Clone(c.Args)}
	switch {
	case len(c.Command) == 0:
	case c.Command[0] == Entrypoint:
		a.Args = append(slices.Clone(c.Command[1:]), a.Args...)
	default:
		return nil, fmt.Errorf("container %s: command %q does not run %s", c.Name, c.Command, Entrypoint)
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			return nil, fmt.Errorf("container %s: env %s comes from elsewhere (valueFrom); give it a value", c.Name, e.Name)
		}
		a.Env = append(a.Env, e.Name+"="+e.Value)
	}
	for _, m := range c.VolumeMounts {
		v := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if v < 0 || spec.Volumes[v].ConfigMap == nil || spec.Volumes[v].ConfigMap.Name != RulesConfigMap {
			continue
		}
		cm, err := ConfigMap(objs, ds.Namespace, RulesConfigMap)
		if err != nil {
			return nil, err
		}
		a.ConfigDir, a.Files = m.MountPath, cm.Data
	}
	if a.ConfigDir == "" {
		return nil, fmt.Errorf("container %s: ConfigMap %s is not mounted", c.Name, RulesConfigMap)
	}
	return a, nil
}

// Localize returns Args with every path in ConfigDir moved to dir (where the
// caller wrote Files), as "--config /etc/shadowtee/rules.yaml" or
// "--config=/etc/shadowtee/rules.yaml".
func (a *Agent) Localize(dir string) []string {
	out := slices.Clone(a.Args)
	prefix := filepath.Clean(a.ConfigDir)
	for i, arg := range out {
		flag, path, eq := strings.Cut(arg, "=")
		if !eq {
			flag, path = "", arg
		}
		if path == prefix || strings.HasPrefix(path, prefix+"/") {
			path = filepath.Join(dir, strings.TrimPrefix(path, prefix))
			if eq {
				path = flag + "=" + path
			}
			out[i] = path
		}
	}
	return out
}
