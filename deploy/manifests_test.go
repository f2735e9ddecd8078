package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/shadowtee/shadowtee/config"
)

func mustRender(t *testing.T, dirs ...string) []Object {
	t.Helper()
	var all []Object
	for _, d := range dirs {
		objs, err := Render(d)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, objs...)
	}
	return all
}

// check runs every check on rendered objects.
func check(objs []Object) []string {
	var errs []string
	for _, o := range objs {
		switch v := o.Typed.(type) {
		case *appsv1.DaemonSet:
			errs = append(errs, checkPod(o.ID(), &v.Spec.Template.Spec)...)
		case *appsv1.Deployment:
			errs = append(errs, checkPod(o.ID(), &v.Spec.Template.Spec)...)
		}
	}
	ds, err := DaemonSet(objs, AgentNamespace, AgentName)
	if err != nil {
		return append(errs, err.Error())
	}
	errs = append(errs, checkAgent(ds, objs)...)
	for _, o := range objs {
		switch v := o.Typed.(type) {
		case *corev1.Service:
			if v.Namespace != AgentNamespace {
				continue
			}
			if len(v.Spec.Ports) != 1 || v.Spec.Ports[0].Name != "metrics" {
				errs = append(errs, o.ID()+": want one port, named metrics")
				continue
			}
			errs = append(errs, checkSelects(o.ID(), labels.SelectorFromSet(v.Spec.Selector), v.Spec.Ports[0].TargetPort, ds)...)
		case *PodMonitor:
			sel, err := metav1.LabelSelectorAsSelector(&v.Spec.Selector)
			if err != nil || len(v.Spec.PodMetricsEndpoints) == 0 {
				errs = append(errs, o.ID()+": no selector or no endpoints")
				continue
			}
			for _, ep := range v.Spec.PodMetricsEndpoints {
				errs = append(errs, checkSelects(o.ID(), sel, intstr.FromString(ep.Port), ds)...)
				if ep.Path != "/metrics" {
					errs = append(errs, o.ID()+": path "+ep.Path+", want /metrics")
				}
			}
		}
	}
	return errs
}

func TestBase(t *testing.T) {
	objs := mustRender(t, "base")
	if errs := check(objs); len(errs) > 0 {
		t.Fatal(strings.Join(errs, "\n"))
	}
	// One agent per node, in its namespace, with its rules.
	want := []string{"Namespace shadowtee-system", "ServiceAccount shadowtee-system/shadowtee", "DaemonSet shadowtee-system/shadowtee",
		"Service shadowtee-system/shadowtee-metrics", "ConfigMap shadowtee-system/shadowtee-rules"}
	var got []string
	for _, o := range objs {
		got = append(got, o.ID())
	}
	if !slices.Equal(got, want) {
		t.Errorf("objects:\n%v\nwant\n%v", got, want)
	}
}

func TestMonitoring(t *testing.T) {
	objs := mustRender(t, "base", "monitoring")
	if errs := check(objs); len(errs) > 0 {
		t.Fatal(strings.Join(errs, "\n"))
	}
	if _, err := Find(objs, "PodMonitor", AgentNamespace, "shadowtee"); err != nil {
		t.Fatal(err)
	}
}

func TestShadowingExample(t *testing.T) {
	objs := mustRender(t, "examples/shadowing")
	if errs := check(objs); len(errs) > 0 {
		t.Fatal(strings.Join(errs, "\n"))
	}
	cm, err := ConfigMap(objs, AgentNamespace, RulesConfigMap)
	if err != nil {
		t.Fatal(err)
	}
	f, err := config.Parse([]byte(cm.Data["rules.yaml"]), "rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The product page's scenario: all requests for shadowing.example on
	// port 8080 go to the shadow httpbin, with the -shadow Host suffix.
	if len(f.Rules) != 1 {
		t.Fatalf("rules: %+v", f.Rules)
	}
	r := f.Rules[0]
	if !slices.Equal(r.Match.Ports, []uint16{8080}) || !slices.Equal(r.Match.Hosts, []string{"shadowing.example"}) ||
		r.Shadow.URL != "http://httpbin.shadow.svc.cluster.local:8080" || r.Percentage != 100 || !r.HostSuffix {
		t.Errorf("rule: %+v", r)
	}
	if errs := checkShadowTargets(f, objs); len(errs) > 0 {
		t.Error(strings.Join(errs, "\n"))
	}
	// The primary serves the rule's port, and both httpbins run the image
	// that listens on it.
	primary, err := Find(objs, "Service", "httpbin", "httpbin")
	if err != nil {
		t.Fatal(err)
	}
	if p := primary.Typed.(*corev1.Service).Spec.Ports; len(p) != 1 || p[0].Port != 8080 {
		t.Errorf("primary Service ports: %+v", p)
	}
	for _, ns := range []string{"httpbin", "shadow"} {
		o, err := Find(objs, "Deployment", ns, "httpbin")
		if err != nil {
			t.Fatal(err)
		}
		c := o.Typed.(*appsv1.Deployment).Spec.Template.Spec.Containers[0]
		if !strings.HasPrefix(c.Image, "docker.io/mccutchen/go-httpbin:") || c.Ports[0].ContainerPort != 8080 {
			t.Errorf("%s: image %s, ports %+v", o.ID(), c.Image, c.Ports)
		}
	}
}

// TestChecksCatch makes sure that each check fails on the manifest it is
// meant to refuse.
func TestChecksCatch(t *testing.T) {
	agent := func(objs []Object) (*appsv1.DaemonSet, *corev1.Container) {
		ds, err := DaemonSet(objs, AgentNamespace, AgentName)
		if err != nil {
			t.Fatal(err)
		}
		return ds, &ds.Spec.Template.Spec.Containers[0]
	}
	yes, no := true, false
	tests := []struct {
		name   string
		change func(objs []Object)
		want   string
	}{
		{"privileged", func(o []Object) { _, c := agent(o); c.SecurityContext.Privileged = &yes }, "container shadowtee: privileged"},
		{"escalation", func(o []Object) { _, c := agent(o); c.SecurityContext.AllowPrivilegeEscalation = &yes }, "allowPrivilegeEscalation is not false"},
		{"escalation unset", func(o []Object) { _, c := agent(o); c.SecurityContext.AllowPrivilegeEscalation = nil }, "allowPrivilegeEscalation is not false"},
		{"SYS_ADMIN", func(o []Object) {
			_, c := agent(o)
			c.SecurityContext.Capabilities.Add = append(c.SecurityContext.Capabilities.Add, "SYS_ADMIN")
		}, "adds capability SYS_ADMIN"},
		{"nothing dropped", func(o []Object) { _, c := agent(o); c.SecurityContext.Capabilities.Drop = nil }, "capabilities are not dropped"},
		{"writable root", func(o []Object) { _, c := agent(o); c.SecurityContext.ReadOnlyRootFilesystem = &no }, "root file system is writable"},
		{"not root", func(o []Object) { _, c := agent(o); u := int64(65532); c.SecurityContext.RunAsUser = &u }, "not run as user 0"},
		{"no liveness", func(o []Object) { _, c := agent(o); c.LivenessProbe = nil }, "no liveness probe"},
		{"no readiness", func(o []Object) { _, c := agent(o); c.ReadinessProbe = nil }, "no readiness probe"},
		{"probe port", func(o []Object) { _, c := agent(o); c.ReadinessProbe.HTTPGet.Port = intstr.FromInt32(9091) }, "readiness probe on port 9091, but --metrics-addr :9090 serves port 9090"},
		{"metrics port", func(o []Object) {
			_, c := agent(o)
			c.Args[slices.Index(c.Args, ":9090")] = ":9191"
		}, "liveness probe on port 9090, but --metrics-addr :9191 serves port 9191"},
		{"probe path", func(o []Object) { _, c := agent(o); c.LivenessProbe.HTTPGet.Path = "/metrics" }, "liveness probe on /metrics, want /healthz"},
		{"no memory limit", func(o []Object) { _, c := agent(o); delete(c.Resources.Limits, corev1.ResourceMemory) }, "no memory limit"},
		{"no cpu request", func(o []Object) { _, c := agent(o); delete(c.Resources.Requests, corev1.ResourceCPU) }, "no cpu request"},
		{"GOMEMLIMIT", func(o []Object) {
			_, c := agent(o)
			c.Resources.Limits[corev1.ResourceMemory] = resource.MustParse("128Mi")
		}, "GOMEMLIMIT 200MiB is not below the memory limit 128Mi"},
		{"latest", func(o []Object) { _, c := agent(o); c.Image = "ghcr.io/shadowtee/shadowtee:latest" }, "is not pinned"},
		{"no tag", func(o []Object) { _, c := agent(o); c.Image = "localhost:5000/shadowtee" }, "is not pinned"},
		{"host network", func(o []Object) { ds, _ := agent(o); ds.Spec.Template.Spec.HostNetwork = false }, "not in the host network"},
		{"dns", func(o []Object) { ds, _ := agent(o); ds.Spec.Template.Spec.DNSPolicy = corev1.DNSClusterFirst }, "dnsPolicy \"ClusterFirst\""},
		{"subPath", func(o []Object) { _, c := agent(o); c.VolumeMounts[0].SubPath = "rules.yaml" }, "with subPath"},
		{"config outside mount", func(o []Object) { _, c := agent(o); c.Args[slices.Index(c.Args, "--config")+1] = "/rules.yaml" }, "--config /rules.yaml is not in a mounted ConfigMap"},
		{"drain", func(o []Object) {
			_, c := agent(o)
			c.Env[slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "SHADOWTEE_DRAIN_TIMEOUT" })].Value = "45s"
		}, "drain timeout 45s is not below the grace period 30s"},
		{"token", func(o []Object) { ds, _ := agent(o); ds.Spec.Template.Spec.AutomountServiceAccountToken = nil }, "mounts a service account token"},
		{"pod security", func(o []Object) {
			ns, _ := Find(o, "Namespace", "", AgentNamespace)
			ns.Typed.(*corev1.Namespace).Labels["pod-security.kubernetes.io/enforce"] = "baseline"
		}, "enforces pod security level \"baseline\""},
		{"unknown rules key", func(o []Object) {
			cm, _ := ConfigMap(o, AgentNamespace, RulesConfigMap)
			cm.Data["rules.yaml"] = strings.Replace(cm.Data["rules.yaml"], "percentage:", "percent:", 1)
		}, `unknown key "percent" in a rule`},
		{"service port", func(o []Object) {
			svc, _ := Find(o, "Service", AgentNamespace, "shadowtee-metrics")
			svc.Typed.(*corev1.Service).Spec.Ports[0].TargetPort = intstr.FromString("http")
		}, "port http is not a port of the agent's container"},
		{"service selector", func(o []Object) {
			svc, _ := Find(o, "Service", AgentNamespace, "shadowtee-metrics")
			svc.Typed.(*corev1.Service).Spec.Selector = map[string]string{"app": "other"}
		}, "does not select the agent's pods"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := mustRender(t, "base")
			tt.change(objs)
			errs := check(objs)
			if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, tt.want) }) {
				t.Errorf("no problem %q found; got:\n%s", tt.want, strings.Join(errs, "\n"))
			}
		})
	}
}

func TestAgentSpec(t *testing.T) {
	objs := mustRender(t, "examples/shadowing")
	a, err := AgentSpec(objs)
	if err != nil {
		t.Fatal(err)
	}
	wantArgs := []string{"attach", "--config", "/etc/shadowtee/rules.yaml", "--iface", "auto", "--metrics-addr", ":9090", "--log-format", "json"}
	if !slices.Equal(a.Args, wantArgs) || a.ConfigDir != "/etc/shadowtee" || !slices.Contains(a.Env, "GOMEMLIMIT=200MiB") {
		t.Fatalf("AgentSpec = %+v", a)
	}
	// What an end-to-end test does: write the files, run with the
	// localized arguments.
	dir := t.TempDir()
	for name, content := range a.Files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := a.Localize(dir)
	if args[2] != filepath.Join(dir, "rules.yaml") || a.Args[2] != "/etc/shadowtee/rules.yaml" {
		t.Fatalf("Localize = %q", args)
	}
	if f, err := config.Load(args[2]); err != nil || f.Rules[0].Name != "httpbin" {
		t.Fatalf("Load: %v, %+v", err, f)
	}
	a.Args = []string{"attach", "--config=/etc/shadowtee/rules.yaml", "--x", "/etc/shadowteex"}
	if got := a.Localize("/tmp/r"); !slices.Equal(got, []string{"attach", "--config=/tmp/r/rules.yaml", "--x", "/etc/shadowteex"}) {
		t.Errorf("Localize = %q", got)
	}
}

// TestDockerfile ties the image to the manifests and the module: the entry
// point the DaemonSet relies on, the Go version, a static build.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(string(gomod))[1]
	for _, want := range []string{
		"FROM golang:" + goVersion + " AS build",
		"CGO_ENABLED=0",
		"-trimpath",
		`ENTRYPOINT ["` + Entrypoint + `"]`,
		"FROM gcr.io/distroless/static-debian12:nonroot",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile has no %q", want)
		}
	}
}
