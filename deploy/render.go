package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Object is one rendered Kubernetes object.
type Object struct {
	// Source is the file the object came from, or the kustomization.yaml
	// whose generator made it.
	Source     string
	APIVersion string
	Kind       string
	Namespace  string // "" for cluster-scoped objects
	Name       string
	// Typed is the object decoded strictly (unknown fields are errors) into
	// its type: *appsv1.DaemonSet, *corev1.ConfigMap, *PodMonitor, ...
	Typed any

	doc map[string]any // the object as rendered
}

// ID returns "Kind namespace/name" (or "Kind name"), for messages.
func (o *Object) ID() string {
	if o.Namespace == "" {
		return o.Kind + " " + o.Name
	}
	return o.Kind + " " + o.Namespace + "/" + o.Name
}

// kinds maps apiVersion and kind to the type an object is decoded into.
// Render refuses other kinds: add one here to use it.
var kinds = map[string]func() any{
	"v1/Namespace":                        func() any { return new(corev1.Namespace) },
	"v1/ServiceAccount":                   func() any { return new(corev1.ServiceAccount) },
	"v1/ConfigMap":                        func() any { return new(corev1.ConfigMap) },
	"v1/Service":                          func() any { return new(corev1.Service) },
	"apps/v1/DaemonSet":                   func() any { return new(appsv1.DaemonSet) },
	"apps/v1/Deployment":                  func() any { return new(appsv1.Deployment) },
	"monitoring.coreos.com/v1/PodMonitor": func() any { return new(PodMonitor) },
}

// clusterScoped are the kinds above that have no namespace.
var clusterScoped = []string{"Namespace"}

// kustomization is the subset of kustomize's file that Render supports.
type kustomization struct {
	APIVersion         string        `json:"apiVersion"`
	Kind               string        `json:"kind"`
	Namespace          string        `json:"namespace,omitempty"`
	Resources          []string      `json:"resources,omitempty"`
	ConfigMapGenerator []cmGenerator `json:"configMapGenerator,omitempty"`
}

type cmGenerator struct {
	Name      string   `json:"name"`
	Namespace string   `json:"namespace,omitempty"`
	Behavior  string   `json:"behavior,omitempty"`
	Files     []string `json:"files"`
	Options   struct {
		DisableNameSuffixHash bool `json:"disableNameSuffixHash"`
	} `json:"options"`
}

// Render renders the kustomization in dir and decodes every object
// strictly into its Kubernetes type (see decodeStrict). Objects come in
// kustomize's order: resources as listed, depth first, then generated ones.
func Render(dir string) ([]Object, error) {
	objs, err := render(dir, nil)
	if err != nil {
		return nil, err
	}
	for i := range objs {
		o := &objs[i]
		data, err := json.Marshal(o.doc)
		if err != nil {
			return nil, err
		}
		o.Typed = kinds[o.APIVersion+"/"+o.Kind]()
		if err := decodeStrict(data, o.Typed); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", o.Source, o.ID(), err)
		}
	}
	return objs, nil
}

func render(dir string, stack []string) ([]Object, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if slices.Contains(stack, abs) {
		return nil, fmt.Errorf("%s: kustomizations include each other: %v", dir, append(stack, abs))
	}
	stack = append(stack, abs)
	kpath := filepath.Join(dir, "kustomization.yaml")
	data, err := os.ReadFile(kpath)
	if err != nil {
		return nil, err
	}
	var k kustomization
	js, err := yaml.YAMLToJSONStrict(data)
	if err == nil {
		err = decodeStrict(js, &k)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w (deploy.Render supports resources, namespace and configMapGenerator)", kpath, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return nil, fmt.Errorf("%s: want apiVersion kustomize.config.k8s.io/v1beta1, kind Kustomization", kpath)
	}

	var objs []Object
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: resource %s: %w", kpath, r, err)
		}
		var more []Object
		if st.IsDir() {
			more, err = render(p, stack)
		} else {
			more, err = readObjects(p)
		}
		if err != nil {
			return nil, err
		}
		objs = append(objs, more...)
	}
	for _, g := range k.ConfigMapGenerator {
		if objs, err = generate(objs, dir, kpath, g); err != nil {
			return nil, err
		}
	}
	if k.Namespace != "" {
		for i := range objs {
			if o := &objs[i]; !slices.Contains(clusterScoped, o.Kind) {
				o.Namespace = k.Namespace
				o.doc["metadata"].(map[string]any)["namespace"] = k.Namespace
			}
		}
	}
	for i := range objs {
		for j := range i {
			if objs[i].ID() == objs[j].ID() {
				return nil, fmt.Errorf("%s: %s is defined twice, in %s and %s", kpath, objs[i].ID(), objs[j].Source, objs[i].Source)
			}
		}
	}
	return objs, nil
}

// decodeStrict decodes JSON as the API server does: field names match
// exactly (encoding/json would take "targetport" for "targetPort"), and
// unknown or repeated fields are errors.
func decodeStrict(data []byte, v any) error {
	strict, err := sigsjson.UnmarshalStrict(data, v, sigsjson.DisallowUnknownFields, sigsjson.DisallowDuplicateFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// docSeparator matches the lines that separate YAML documents.
var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

// readObjects reads the objects of a YAML file.
func readObjects(path string) ([]Object, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var objs []Object
	for _, d := range docSeparator.Split(string(data), -1) {
		js, err := yaml.YAMLToJSONStrict([]byte(d))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue // only comments
		}
		var doc map[string]any
		if err := json.Unmarshal(js, &doc); err != nil {
			return nil, fmt.Errorf("%s: a document is not an object: %w", path, err)
		}
		o, err := newObject(path, doc)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o)
	}
	return objs, nil
}

func newObject(source string, doc map[string]any) (Object, error) {
	o := Object{Source: source, doc: doc}
	o.APIVersion, _ = doc["apiVersion"].(string)
	o.Kind, _ = doc["kind"].(string)
	meta, _ := doc["metadata"].(map[string]any)
	if meta == nil {
		return o, fmt.Errorf("%s: %s without metadata", source, o.Kind)
	}
	o.Name, _ = meta["name"].(string)
	o.Namespace, _ = meta["namespace"].(string)
	if o.Name == "" {
		return o, fmt.Errorf("%s: %s without metadata.name", source, o.Kind)
	}
	if kinds[o.APIVersion+"/"+o.Kind] == nil {
		return o, fmt.Errorf("%s: %s: apiVersion %q, kind %q is not known to deploy.Render (add it to kinds)", source, o.ID(), o.APIVersion, o.Kind)
	}
	return o, nil
}

// generate runs one configMapGenerator over objs.
func generate(objs []Object, dir, kpath string, g cmGenerator) ([]Object, error) {
	where := fmt.Sprintf("%s: configMapGenerator %s", kpath, g.Name)
	if !g.Options.DisableNameSuffixHash {
		return nil, fmt.Errorf("%s: set options.disableNameSuffixHash: true (the agent reloads a ConfigMap in place; a hashed name would restart it instead)", where)
	}
	if len(g.Files) == 0 {
		return nil, fmt.Errorf("%s: no files (deploy.Render supports files only)", where)
	}
	data := map[string]any{}
	for _, f := range g.Files {
		content, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		data[filepath.Base(f)] = string(content)
	}
	meta := map[string]any{"name": g.Name}
	if g.Namespace != "" {
		meta["namespace"] = g.Namespace
	}
	cm, err := newObject(kpath, map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data})
	if err != nil {
		return nil, err
	}
	switch g.Behavior {
	case "", "create":
		return append(objs, cm), nil
	case "replace":
		// As kustomize does: the one ConfigMap of that name (and namespace,
		// when the generator names one) gets the new data.
		found := -1
		for i, o := range objs {
			if o.Kind == "ConfigMap" && o.Name == g.Name && (g.Namespace == "" || o.Namespace == g.Namespace) {
				if found >= 0 {
					return nil, fmt.Errorf("%s: several ConfigMaps to replace", where)
				}
				found = i
			}
		}
		if found < 0 {
			return nil, fmt.Errorf("%s: no ConfigMap %s to replace", where, g.Name)
		}
		objs[found].doc["data"] = data
		delete(objs[found].doc, "binaryData")
		objs[found].Source = kpath
		return objs, nil
	}
	return nil, fmt.Errorf("%s: behavior %q (deploy.Render supports create and replace)", where, g.Behavior)
}

// PodMonitor is the part of the Prometheus Operator's PodMonitor
// (monitoring.coreos.com/v1) that the manifests use. The CRD is not in
// k8s.io/api; a field outside this subset is an error here even where the
// CRD has it: check its schema, then add it.
type PodMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              PodMonitorSpec `json:"spec"`
}

// PodMonitorSpec is the spec of a PodMonitor.
type PodMonitorSpec struct {
	Selector            metav1.LabelSelector `json:"selector"`
	NamespaceSelector   *NamespaceSelector   `json:"namespaceSelector,omitempty"`
	PodMetricsEndpoints []PodMetricsEndpoint `json:"podMetricsEndpoints"`
	JobLabel            string               `json:"jobLabel,omitempty"`
}

// NamespaceSelector chooses the namespaces of the pods a PodMonitor scrapes.
type NamespaceSelector struct {
	Any        bool     `json:"any,omitempty"`
	MatchNames []string `json:"matchNames,omitempty"`
}

// PodMetricsEndpoint is one endpoint a PodMonitor scrapes.
type PodMetricsEndpoint struct {
	Port          string `json:"port,omitempty"`
	Path          string `json:"path,omitempty"`
	Interval      string `json:"interval,omitempty"`
	ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
}

// errNotFound is wrapped by the finders below.
var errNotFound = errors.New("not found")
