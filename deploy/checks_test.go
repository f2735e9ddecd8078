package deploy

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/shadowtee/shadowtee/config"
)

// The checks below are what a reviewer of a manifest would refuse. Each
// returns the problems it finds, one line each; none is a pass.

// allowedCaps are the capabilities a container may add: what the agent
// needs (SYS_RESOURCE for kernels before 5.11), and nothing that opens the
// rest of the kernel, such as SYS_ADMIN.
var allowedCaps = []corev1.Capability{"BPF", "NET_ADMIN", "PERFMON", "SYS_RESOURCE"}

// checkPod checks every container of a pod template.
func checkPod(owner string, spec *corev1.PodSpec) []string {
	var errs []string
	bad := func(c *corev1.Container, format string, args ...any) {
		errs = append(errs, fmt.Sprintf("%s: container %s: %s", owner, c.Name, fmt.Sprintf(format, args...)))
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		errs = append(errs, owner+": mounts a service account token it does not need (set automountServiceAccountToken: false)")
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		if !pinned(c.Image) {
			bad(c, "image %q is not pinned to a tag or digest", c.Image)
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[r]; !ok {
				bad(c, "no %s request", r)
			}
			if _, ok := c.Resources.Limits[r]; !ok {
				bad(c, "no %s limit", r)
			}
		}
		if c.LivenessProbe == nil {
			bad(c, "no liveness probe")
		}
		if c.ReadinessProbe == nil {
			bad(c, "no readiness probe")
		}
		sc := c.SecurityContext
		if sc == nil {
			bad(c, "no securityContext")
			continue
		}
		if sc.Privileged != nil && *sc.Privileged {
			bad(c, "privileged")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			bad(c, "allowPrivilegeEscalation is not false")
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			bad(c, "the root file system is writable")
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			bad(c, "capabilities are not dropped (drop: [ALL])")
		} else {
			for _, cp := range sc.Capabilities.Add {
				if !slices.Contains(allowedCaps, cp) {
					bad(c, "adds capability %s (allowed: %v)", cp, allowedCaps)
				}
			}
		}
		for _, m := range c.VolumeMounts {
			if configMapVolume(spec, m.Name) != "" && (m.SubPath != "" || m.SubPathExpr != "") {
				bad(c, "mounts ConfigMap volume %s with subPath, which never sees updates (mount the directory)", m.Name)
			}
		}
	}
	return errs
}

// pinned reports whether image names a tag other than latest, or a digest.
func pinned(image string) bool {
	if strings.Contains(image, "@sha256:") {
		return true
	}
	name := image[strings.LastIndexByte(image, '/')+1:]
	_, tag, ok := strings.Cut(name, ":")
	return ok && tag != "" && tag != "latest"
}

func configMapVolume(spec *corev1.PodSpec, name string) string {
	for _, v := range spec.Volumes {
		if v.Name == name && v.ConfigMap != nil {
			return v.ConfigMap.Name
		}
	}
	return ""
}

// flagValue returns the value of --name in args ("--name v" or
// "--name=v").
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func envValue(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// portNumber resolves a probe or Service target port against the
// container's named ports.
func portNumber(c *corev1.Container, p intstr.IntOrString) int {
	if p.Type == intstr.Int {
		return p.IntValue()
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort)
		}
	}
	return -1
}

// checkAgent checks what the agent's DaemonSet needs to work at all.
func checkAgent(ds *appsv1.DaemonSet, objs []Object) []string {
	var errs []string
	bad := func(format string, args ...any) {
		errs = append(errs, "DaemonSet "+ds.Name+": "+fmt.Sprintf(format, args...))
	}
	spec := &ds.Spec.Template.Spec
	if !spec.HostNetwork {
		bad("not in the host network: the TC program is attached to the node's interfaces (set hostNetwork: true)")
	}
	if spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		bad("dnsPolicy %q cannot resolve the shadow's Service name from the host network (set ClusterFirstWithHostNet)", spec.DNSPolicy)
	}
	sel, err := metaSelector(ds)
	if err != nil || !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
		bad("its selector does not select its own pods")
	}
	if u := ds.Spec.UpdateStrategy; u.Type != appsv1.RollingUpdateDaemonSetStrategyType || u.RollingUpdate == nil || u.RollingUpdate.MaxUnavailable == nil {
		bad("no RollingUpdate strategy with maxUnavailable")
	}
	if _, err := Find(objs, "ServiceAccount", ds.Namespace, spec.ServiceAccountName); err != nil {
		bad("service account: %v", err)
	}
	if ns, err := Find(objs, "Namespace", "", ds.Namespace); err != nil {
		bad("namespace: %v", err)
	} else if lvl := ns.Typed.(*corev1.Namespace).Labels["pod-security.kubernetes.io/enforce"]; lvl != "privileged" {
		bad("namespace %s enforces pod security level %q, which refuses hostNetwork and the BPF capabilities (label it privileged)", ds.Namespace, lvl)
	}
	i := slices.IndexFunc(spec.Containers, func(c corev1.Container) bool { return c.Name == AgentName })
	if i < 0 {
		bad("no container %s", AgentName)
		return errs
	}
	c := &spec.Containers[i]
	sc := c.SecurityContext
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		bad("not run as user 0: Kubernetes grants added capabilities to root only")
	}

	// Probes on the port that --metrics-addr serves.
	addr, ok := flagValue(c.Args, "metrics-addr")
	_, portText, err := net.SplitHostPort(addr)
	metricsPort, _ := strconv.Atoi(portText)
	if !ok || err != nil || metricsPort == 0 {
		bad("no --metrics-addr with a port: the probes need /healthz and /readyz")
	}
	for what, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			bad("%s probe is not an HTTP GET", what)
			continue
		}
		if n := portNumber(c, p.HTTPGet.Port); n != metricsPort {
			bad("%s probe on port %d, but --metrics-addr %s serves port %d", what, n, addr, metricsPort)
		}
		if want := map[string]string{"liveness": "/healthz", "readiness": "/readyz"}[what]; p.HTTPGet.Path != want {
			bad("%s probe on %s, want %s", what, p.HTTPGet.Path, want)
		}
	}

	// GOMEMLIMIT below the memory limit, so the runtime collects before the
	// OOM killer acts.
	limit := c.Resources.Limits[corev1.ResourceMemory]
	if v, ok := envValue(c, "GOMEMLIMIT"); !ok {
		bad("no GOMEMLIMIT")
	} else if n, err := goMemLimit(v); err != nil {
		bad("GOMEMLIMIT: %v", err)
	} else if n >= limit.Value() {
		bad("GOMEMLIMIT %s is not below the memory limit %s", v, limit.String())
	}

	// The drain on exit fits in the grace period.
	grace := time.Duration(30) * time.Second
	if spec.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	}
	drain := 5 * time.Second // agent.DefaultDrainTimeout
	if v, ok := envValue(c, "SHADOWTEE_DRAIN_TIMEOUT"); ok {
		if drain, err = time.ParseDuration(v); err != nil {
			bad("SHADOWTEE_DRAIN_TIMEOUT: %v", err)
		}
	}
	if drain >= grace {
		bad("drain timeout %v is not below the grace period %v", drain, grace)
	}

	// The rules: a mounted ConfigMap (whole directory) holding the --config
	// file, which the agent's own parser accepts.
	cfgPath, ok := flagValue(c.Args, "config")
	if !ok {
		bad("no --config")
		return errs
	}
	for _, m := range c.VolumeMounts {
		cmName := configMapVolume(spec, m.Name)
		rel, under := strings.CutPrefix(cfgPath, strings.TrimSuffix(m.MountPath, "/")+"/")
		if cmName == "" || !under {
			continue
		}
		cm, err := ConfigMap(objs, ds.Namespace, cmName)
		if err != nil {
			bad("--config %s: %v", cfgPath, err)
			return errs
		}
		rules, ok := cm.Data[rel]
		if !ok {
			bad("--config %s: ConfigMap %s has no key %s", cfgPath, cmName, rel)
			return errs
		}
		if _, err := config.Parse([]byte(rules), "ConfigMap "+cmName+" "+rel); err != nil {
			bad("rules do not load:\n%v", err)
		}
		return errs
	}
	bad("--config %s is not in a mounted ConfigMap", cfgPath)
	return errs
}

// goMemLimit parses a GOMEMLIMIT value: bytes with an optional B, KiB, MiB,
// GiB or TiB suffix.
func goMemLimit(v string) (int64, error) {
	for i, unit := range []string{"TiB", "GiB", "MiB", "KiB", "B"} {
		if num, ok := strings.CutSuffix(v, unit); ok {
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%q is not a size", v)
			}
			return n << (10 * (4 - i)), nil
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size", v)
	}
	return n, nil
}

// checkSelects checks that a Service or PodMonitor selects the agent's pods
// and names a port of its container.
func checkSelects(what string, sel labels.Selector, port intstr.IntOrString, ds *appsv1.DaemonSet) []string {
	var errs []string
	if !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
		errs = append(errs, what+": does not select the agent's pods")
	}
	c := &ds.Spec.Template.Spec.Containers[0]
	if portNumber(c, port) < 0 || (port.Type == intstr.Int && !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return int(p.ContainerPort) == port.IntValue() })) {
		errs = append(errs, fmt.Sprintf("%s: port %s is not a port of the agent's container", what, port.String()))
	}
	return errs
}

// checkShadowTargets checks that every in-cluster shadow URL of the rules
// names a rendered Service and one of its ports.
func checkShadowTargets(f *config.File, objs []Object) []string {
	var errs []string
	for _, r := range f.Rules {
		u, err := url.Parse(r.Shadow.URL)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		name, ns, ok := strings.Cut(strings.TrimSuffix(u.Hostname(), ".svc.cluster.local"), ".")
		if !ok || !strings.HasSuffix(u.Hostname(), ".svc.cluster.local") {
			continue // outside the cluster
		}
		o, err := Find(objs, "Service", ns, name)
		if err != nil {
			errs = append(errs, fmt.Sprintf("rule %s: shadow %s: %v", r.Name, r.Shadow.URL, err))
			continue
		}
		port, _ := strconv.Atoi(u.Port())
		if port == 0 {
			port = map[string]int{"http": 80, "https": 443}[u.Scheme]
		}
		svc := o.Typed.(*corev1.Service)
		if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return int(p.Port) == port }) {
			errs = append(errs, fmt.Sprintf("rule %s: shadow %s: Service %s/%s has no port %d", r.Name, r.Shadow.URL, ns, name, port))
		}
	}
	return errs
}

func metaSelector(ds *appsv1.DaemonSet) (labels.Selector, error) {
	if ds.Spec.Selector == nil {
		return nil, fmt.Errorf("no selector")
	}
	return metav1.LabelSelectorAsSelector(ds.Spec.Selector)
}
