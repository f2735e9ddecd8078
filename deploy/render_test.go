package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// tree writes files (path: content) under a new directory and returns it.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const kheader = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"

const cmYAML = `apiVersion: v1
kind: ConfigMap
metadata:
  name: cm
  namespace: elsewhere
data:
  a: "1"
`

func TestRenderTransforms(t *testing.T) {
	dir := tree(t, map[string]string{
		"base/kustomization.yaml": kheader + "namespace: inner\nresources: [objs.yaml]\nconfigMapGenerator:\n- name: gen\n  files: [conf/r.txt]\n  options: {disableNameSuffixHash: true}\n",
		"base/objs.yaml":          "# leading comment\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: inner}\n--- # a comment\n" + cmYAML + "---\n# only a comment\n",
		"base/conf/r.txt":         "base rules\n",
		"top/kustomization.yaml":  kheader + "namespace: outer\nresources: [../base]\nconfigMapGenerator:\n- name: gen\n  namespace: inner\n  behavior: replace\n  files: [r.txt]\n  options: {disableNameSuffixHash: true}\n",
		"top/r.txt":               "top rules\n",
	})
	objs, err := Render(filepath.Join(dir, "base"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, o := range objs {
		ids = append(ids, o.ID())
	}
	if got := strings.Join(ids, ", "); got != "Namespace inner, ConfigMap inner/cm, ConfigMap inner/gen" {
		t.Fatalf("objects: %s", got)
	}
	gen := objs[2].Typed.(*corev1.ConfigMap)
	if gen.Namespace != "inner" || gen.Data["r.txt"] != "base rules\n" {
		t.Errorf("generated: %+v", gen)
	}

	// The outer namespace applies to everything below, after the replace,
	// which found the ConfigMap by its namespace at that point.
	objs, err = Render(filepath.Join(dir, "top"))
	if err != nil {
		t.Fatal(err)
	}
	gen = objs[2].Typed.(*corev1.ConfigMap)
	if gen.Namespace != "outer" || len(gen.Data) != 1 || gen.Data["r.txt"] != "top rules\n" {
		t.Errorf("replaced: %+v", gen)
	}
	if objs[0].Namespace != "" || objs[1].Namespace != "outer" {
		t.Errorf("namespaces: %q, %q", objs[0].Namespace, objs[1].Namespace)
	}
	if !strings.HasSuffix(objs[2].Source, filepath.Join("top", "kustomization.yaml")) {
		t.Errorf("source of the replaced ConfigMap: %s", objs[2].Source)
	}
}

func TestRenderRefuses(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"unsupported field", map[string]string{"kustomization.yaml": kheader + "patches: [{path: p.yaml}]\n"},
			`unknown field "patches" (deploy.Render supports resources, namespace and configMapGenerator)`},
		{"not a kustomization", map[string]string{"kustomization.yaml": "apiVersion: v1\nkind: List\n"},
			"want apiVersion kustomize.config.k8s.io/v1beta1, kind Kustomization"},
		{"missing resource", map[string]string{"kustomization.yaml": kheader + "resources: [nope.yaml]\n"},
			"resource nope.yaml: stat"},
		{"cycle", map[string]string{"a/kustomization.yaml": kheader + "resources: [../b]\n", "b/kustomization.yaml": kheader + "resources: [../a]\n", "kustomization.yaml": kheader + "resources: [a]\n"},
			"kustomizations include each other"},
		{"hashed generator", map[string]string{"kustomization.yaml": kheader + "configMapGenerator:\n- name: g\n  files: [f]\n", "f": "x"},
			"set options.disableNameSuffixHash: true"},
		{"merge", map[string]string{"kustomization.yaml": kheader + "resources: [cm.yaml]\nconfigMapGenerator:\n- {name: cm, behavior: merge, files: [f], options: {disableNameSuffixHash: true}}\n", "f": "x", "cm.yaml": cmYAML},
			`behavior "merge" (deploy.Render supports create and replace)`},
		{"replace nothing", map[string]string{"kustomization.yaml": kheader + "configMapGenerator:\n- {name: cm, behavior: replace, files: [f], options: {disableNameSuffixHash: true}}\n", "f": "x"},
			"no ConfigMap cm to replace"},
		{"literals", map[string]string{"kustomization.yaml": kheader + "configMapGenerator:\n- {name: cm, literals: [a=b], options: {disableNameSuffixHash: true}}\n"},
			`unknown field "configMapGenerator[0].literals"`},
		{"twice", map[string]string{"kustomization.yaml": kheader + "resources: [cm.yaml, again.yaml]\n", "cm.yaml": cmYAML, "again.yaml": cmYAML},
			"ConfigMap elsewhere/cm is defined twice"},
		{"unknown kind", map[string]string{"kustomization.yaml": kheader + "resources: [x.yaml]\n", "x.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"},
			`apiVersion "v1", kind "Secret" is not known to deploy.Render`},
		{"unknown field", map[string]string{"kustomization.yaml": kheader + "resources: [x.yaml]\n", "x.yaml": "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: s}\nautomountToken: false\n"},
			`unknown field "automountToken"`},
		{"misspelt nested field", map[string]string{"kustomization.yaml": kheader + "resources: [x.yaml]\n", "x.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80, targetport: 80}]}\n"},
			`unknown field "spec.ports[0].targetport"`},
		{"duplicate key", map[string]string{"kustomization.yaml": kheader + "resources: [x.yaml]\n", "x.yaml": "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: s}\nmetadata: {name: t}\n"},
			`"metadata" already set`},
		{"no name", map[string]string{"kustomization.yaml": kheader + "resources: [x.yaml]\n", "x.yaml": "apiVersion: v1\nkind: ServiceAccount\nmetadata: {}\n"},
			"ServiceAccount without metadata.name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Render(tree(t, tt.files))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}
