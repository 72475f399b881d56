package charts

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	revsync "github.com/revoked-dev/revoked/sync"
)

// checkSigningKeyOnlyInJob: no pod of the release but the snapshot CronJob's mounts or
// references the Secret holding the signing key, in any way a pod can (a volume, a
// projected volume, an environment variable, envFrom). Application pods hold the
// sidecars' files: with the key there, anyone reading them could sign a snapshot.
func checkSigningKeyOnlyInJob(t *testing.T, m *manifests, cronJob, secret string) {
	t.Helper()
	for _, p := range m.podSpecs() {
		if p.name == "CronJob "+cronJob {
			continue
		}
		for _, v := range p.spec.Volumes {
			if v.Secret != nil && v.Secret.SecretName == secret {
				t.Errorf("%s mounts the signing key's Secret %s", p.name, secret)
			}
			if v.Projected != nil {
				for _, src := range v.Projected.Sources {
					if src.Secret != nil && src.Secret.Name == secret {
						t.Errorf("%s projects the signing key's Secret %s", p.name, secret)
					}
				}
			}
		}
		for _, c := range append(append([]corev1.Container{}, p.spec.InitContainers...), p.spec.Containers...) {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == secret {
					t.Errorf("%s: container %s reads the signing key's Secret %s", p.name, c.Name, secret)
				}
			}
			for _, e := range c.EnvFrom {
				if e.SecretRef != nil && e.SecretRef.Name == secret {
					t.Errorf("%s: container %s reads the signing key's Secret %s", p.name, c.Name, secret)
				}
			}
		}
	}
}

// renderedSigningKey returns the signing key of the Secret the chart rendered (its own
// key pair), checked to be an Ed25519 key in PKCS#8 PEM as revokectl snapshot reads it;
// nil when the chart rendered no such Secret (the user's own).
func renderedSigningKey(t *testing.T, m *manifests, secret, file string) ed25519.PrivateKey {
	t.Helper()
	for _, s := range m.secrets {
		if s.Name != secret {
			continue
		}
		priv, err := revsync.ParseSnapshotSigningKey(s.Data[filepath.Base(file)])
		if err != nil {
			t.Errorf("Secret %s: %s is no Ed25519 PKCS#8 key revokectl snapshot reads: %v", secret, filepath.Base(file), err)
			return nil
		}
		return priv
	}
	return nil
}

// snapshotPods returns the pods with a revoked sidecar and their sidecar container.
func sidecarPods(t *testing.T, m *manifests) map[string]corev1.Container {
	out := map[string]corev1.Container{}
	for _, p := range m.podSpecs() {
		for _, c := range append(append([]corev1.Container{}, p.spec.InitContainers...), p.spec.Containers...) {
			if c.Name == "revoked" {
				out[p.name] = c
			}
		}
	}
	return out
}

// Issue 10: snapshots are on by default, signed with a key the chart generates, which only
// the CronJob mounts; the sidecars get its public half in a ConfigMap they mount optional.
func TestSnapshotDefaultGeneratesTheKey(t *testing.T) {
	m := render(t, "--set", "sidecar.allowAnyAudience=true", "--set", "example.enabled=true", "--set", "sidecar.jwks.url=https://idp/jwks")
	checkSnapshot(t, m)
	if len(m.cronJobs) != 1 || len(m.secrets) != 1 {
		t.Fatalf("%d CronJobs and %d Secrets, want the snapshot CronJob and its key", len(m.cronJobs), len(m.secrets))
	}
	secret := m.secrets[0].Name
	if secret != "rel-revoked-snapshot-signing-key" {
		t.Errorf("Secret %s", secret)
	}
	job := m.cronJobs[0].Spec.JobTemplate.Spec.Template.Spec
	keyFile := flags(job.Containers[0])["signing-key"]
	priv := renderedSigningKey(t, m, secret, keyFile)
	if priv == nil {
		t.Fatalf("the CronJob's --signing-key %s is not the rendered Secret's key", keyFile)
	}
	mounted := false
	for _, v := range job.Volumes {
		mounted = mounted || v.Secret != nil && v.Secret.SecretName == secret
	}
	if !mounted {
		t.Error("the CronJob does not mount the generated key")
	}
	checkSigningKeyOnlyInJob(t, m, m.cronJobs[0].Name, secret)

	pods := sidecarPods(t, m)
	if len(pods) != 2 {
		t.Fatalf("sidecars in %d pods, want the example and the test pod", len(pods))
	}
	for name, c := range pods {
		f := flags(c)
		if f["snapshot-bucket"] != "revoked-snapshots" || f["snapshot-public-key"] != "/etc/revoked/snapshot-public-key/snapshot.pub" {
			t.Errorf("%s: --snapshot-bucket %q --snapshot-public-key %q", name, f["snapshot-bucket"], f["snapshot-public-key"])
		}
	}
	for _, p := range m.podSpecs() {
		if _, ok := pods[p.name]; !ok {
			continue
		}
		for _, v := range p.spec.Volumes {
			if v.Name == "revoked-snapshot-public-key" && (v.ConfigMap == nil || v.ConfigMap.Name != "rel-revoked-snapshot-public-key" ||
				v.ConfigMap.Optional == nil || !*v.ConfigMap.Optional) {
				t.Errorf("%s: key volume %+v, want ConfigMap rel-revoked-snapshot-public-key, optional", p.name, v)
			}
		}
	}
}

// A key of the user's own (signingKeySecret.name, for helm template and GitOps): the
// chart renders no Secret and mounts the user's in the CronJob only.
func TestSnapshotOwnSigningKey(t *testing.T) {
	for name, sets := range map[string][]string{
		"public key in a ConfigMap": snapshotSets("example.enabled=true"),
		"public key inline":         append(snapshotSets("snapshot.publicKey.configMap.name="), "snapshot.publicKey.pem="+ownPublicKey(t)),
	} {
		t.Run(name, func(t *testing.T) {
			var args []string
			for _, s := range sets {
				args = append(args, "--set", s)
			}
			m := render(t, args...)
			checkSnapshot(t, m)
			if len(m.secrets) != 0 {
				t.Errorf("%d Secrets rendered with a signing key of the user's own", len(m.secrets))
			}
			checkSigningKeyOnlyInJob(t, m, m.cronJobs[0].Name, "snap-key")
		})
	}
}

func ownPublicKey(t *testing.T) string {
	_, pub, err := revsync.GenerateSnapshotKey()
	if err != nil {
		t.Fatal(err)
	}
	return string(pub)
}

// snapshot.enabled=false renders none of it: no CronJob, no key, no sidecar flag or volume.
func TestSnapshotDisabled(t *testing.T) {
	m := render(t, "--set", "sidecar.allowAnyAudience=true", "--set", "example.enabled=true", "--set", "sidecar.jwks.url=https://idp/jwks",
		"--set", "snapshot.enabled=false")
	if len(m.cronJobs) != 0 || len(m.secrets) != 0 {
		t.Errorf("%d CronJobs, %d Secrets with snapshots off", len(m.cronJobs), len(m.secrets))
	}
	for _, cm := range m.configMaps {
		if strings.Contains(cm.Name, "snapshot") {
			t.Errorf("ConfigMap %s with snapshots off", cm.Name)
		}
	}
	for _, p := range m.podSpecs() {
		for _, v := range p.spec.Volumes {
			if strings.Contains(v.Name, "snapshot") {
				t.Errorf("%s: volume %s with snapshots off", p.name, v.Name)
			}
		}
	}
	for name, c := range sidecarPods(t, m) {
		for _, a := range c.Args {
			if strings.Contains(a, "snapshot") {
				t.Errorf("%s: %s with snapshots off", name, a)
			}
		}
	}
}

// On helm upgrade the chart reads its Secret back (lookup) and keeps the key: the
// certificate the sidecars get is derived from that key again. helm template has no
// cluster to look up, so a copy of the chart takes the lookup's answer from a value.
func TestSnapshotKeyKeptOnUpgrade(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "revoked")
	if err := os.CopyFS(dir, os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	tmpl := filepath.Join(dir, "templates", "snapshot-keys.yaml")
	src, err := os.ReadFile(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	const lookup = `lookup "v1" "Secret" .Release.Namespace $secretName`
	if !strings.Contains(string(src), lookup) {
		t.Fatalf("snapshot-keys.yaml no longer reads the key back with %s", lookup)
	}
	if err := os.WriteFile(tmpl, []byte(strings.Replace(string(src), lookup, ".Values.lookedUp", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "values.schema.json")); err != nil { // it refuses lookedUp
		t.Fatal(err)
	}
	privPEM, _, err := revsync.GenerateSnapshotKey()
	if err != nil {
		t.Fatal(err)
	}
	existing, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Secret",
		"data": map[string]string{"snapshot.key": base64.StdEncoding.EncodeToString(privPEM)}})
	out, err := helm(t, "template", "rel", dir, "--namespace", "ns", "--set", "sidecar.allowAnyAudience=true",
		"--set-json", "lookedUp="+string(existing))
	if err != nil {
		t.Fatal(err)
	}
	m := decodeAll(t, out)
	checkSnapshot(t, m)
	if len(m.secrets) != 1 || string(m.secrets[0].Data["snapshot.key"]) != string(privPEM) {
		t.Fatalf("the Secret found on upgrade was not kept: %d Secrets", len(m.secrets))
	}
	want, _ := revsync.ParseSnapshotSigningKey(privPEM)
	for _, cm := range m.configMaps {
		if cm.Name == "rel-revoked-snapshot-public-key" {
			pubs, err := revsync.ParseSnapshotPublicKeys([]byte(cm.Data["snapshot.pub"]))
			if err != nil || len(pubs) != 1 || !pubs[0].Equal(want.Public()) {
				t.Fatalf("the sidecars' key is not the kept key's public half: %v", err)
			}
			return
		}
	}
	t.Fatal("no public key ConfigMap")
}

// An application chart (the library) starts from snapshots by default: its pods mount the
// key from revoked-snapshot-public-key, the copy NOTES.txt tells the platform to make,
// optional so that a namespace without it still starts (a full replay, said loudly).
func TestLibraryChartAppSnapshotKeyOptional(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "revoked-sidecar"), os.DirFS("revoked-sidecar")); err != nil {
		t.Fatal(err)
	}
	app := filepath.Join(dir, "testdata", "app")
	if err := os.CopyFS(app, os.DirFS(filepath.Join("testdata", "app"))); err != nil {
		t.Fatal(err)
	}
	if out, err := helm(t, "dependency", "build", app); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for name, tc := range map[string]struct {
		sets    []string
		cm      string
		enabled bool
	}{
		"default":         {nil, "revoked-snapshot-public-key", true},
		"named ConfigMap": {[]string{"revoked.snapshot.publicKey.configMap.name=platform-key"}, "platform-key", true},
		"snapshots off":   {[]string{"revoked.snapshot.enabled=false"}, "", false},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := helm(t, append([]string{"template", "shop", app, "--namespace", "shop"}, sets(tc.sets...)...)...)
			if err != nil {
				t.Fatal(err)
			}
			m := decodeAll(t, out)
			if len(m.deployments) != 1 || len(m.configMaps)+len(m.secrets)+len(m.cronJobs) != 0 {
				t.Fatalf("the app renders %v", m.kinds)
			}
			spec := m.deployments[0].Spec.Template.Spec
			rc, _ := revokedContainer(t, "shop", spec)
			f := flags(rc)
			if got := f["snapshot-bucket"] != ""; got != tc.enabled {
				t.Errorf("--snapshot-bucket %q, want snapshots %v", f["snapshot-bucket"], tc.enabled)
			}
			var vol *corev1.Volume
			for i, v := range spec.Volumes {
				if v.Name == "revoked-snapshot-public-key" {
					vol = &spec.Volumes[i]
				}
			}
			if !tc.enabled {
				if vol != nil {
					t.Error("a key volume with snapshots off")
				}
				return
			}
			if f["snapshot-public-key"] != "/etc/revoked/snapshot-public-key/snapshot.pub" || vol == nil || vol.ConfigMap == nil ||
				vol.ConfigMap.Name != tc.cm || vol.ConfigMap.Optional == nil || !*vol.ConfigMap.Optional {
				t.Errorf("--snapshot-public-key %q from %+v, want ConfigMap %s, optional", f["snapshot-public-key"], vol, tc.cm)
			}
		})
	}
}

// helm uninstall keeps the generated signing key (resource-policy keep): a reinstall reads
// it back (TestSnapshotKeyKeptOnUpgrade) instead of making a new key, which would leave
// every copy of the public key in application namespaces refusing the snapshots
// (bad_signature) until copied again. The public key's ConfigMap is not kept: it is
// derived from the kept key at every render.
func TestSnapshotSigningKeyKeptOnUninstall(t *testing.T) {
	m := render(t, "--set", "sidecar.allowAnyAudience=true")
	if len(m.secrets) != 1 || m.secrets[0].Name != "rel-revoked-snapshot-signing-key" {
		t.Fatalf("%d Secrets, want the generated signing key", len(m.secrets))
	}
	if got := m.secrets[0].Annotations["helm.sh/resource-policy"]; got != "keep" {
		t.Errorf("Secret %s: helm.sh/resource-policy %q, want keep", m.secrets[0].Name, got)
	}
	found := false
	for _, cm := range m.configMaps {
		if cm.Name != "rel-revoked-snapshot-public-key" {
			continue
		}
		found = true
		if got, ok := cm.Annotations["helm.sh/resource-policy"]; ok {
			t.Errorf("ConfigMap %s: helm.sh/resource-policy %q, want none: it is derived from the kept key", cm.Name, got)
		}
	}
	if !found {
		t.Fatal("no public key ConfigMap")
	}
}
