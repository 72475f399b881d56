package charts

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/revoked-dev/revoked/internal/buildinfo"
)

// ldflagsX matches one -X importpath.name=$VAR of a go build -ldflags string, the
// variable written $(VAR) (make), ${VAR} or $VAR (shell).
var ldflagsX = regexp.MustCompile(`-X\s+([^\s=]+)=\$[({]?([A-Za-z_][A-Za-z0-9_]*)`)

// xFlags returns importpath.name → the variable its value comes from, for every -X in text.
func xFlags(text string) map[string]string {
	out := map[string]string{}
	for _, m := range ldflagsX.FindAllStringSubmatch(text, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// TestDockerfileLdflagsMatchMakefile: the image stamps the version and revision into the
// same variables as make build (-X names of internal/buildinfo), from build args of the
// same names that make image passes, so --version and revoked_build_info say the same for
// a binary from either.
func TestDockerfileLdflagsMatchMakefile(t *testing.T) {
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join("..", name))
		if err != nil {
			t.Fatal(err)
		}
		// Join continued lines, as make and the Dockerfile's shell read them.
		return strings.ReplaceAll(string(data), "\\\n", " ")
	}
	makefile, dockerfile := read("Makefile"), read("Dockerfile")

	var ldflags, imageTarget string
	lines := strings.Split(makefile, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "LDFLAGS :=") {
			ldflags = l
		}
		if strings.HasPrefix(l, "image:") && i+1 < len(lines) {
			imageTarget = lines[i+1]
		}
	}
	want := xFlags(ldflags)
	// The variables the -X names set exist (this file would not compile otherwise) and are
	// the ones buildinfo reads.
	pkg := "github.com/revoked-dev/revoked/internal/buildinfo."
	vars := map[string]*string{pkg + "Version": &buildinfo.Version, pkg + "Revision": &buildinfo.Revision}
	if len(want) != len(vars) {
		t.Fatalf("Makefile LDFLAGS sets %v, want %d variables of internal/buildinfo", want, len(vars))
	}
	for name := range want {
		if vars[name] == nil {
			t.Errorf("Makefile sets %s, which is not buildinfo.Version or Revision", name)
		}
	}

	var runs []string
	var args []string
	for _, l := range strings.Split(dockerfile, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) > 1 && f[0] == "ARG":
			name, _, _ := strings.Cut(f[1], "=")
			args = append(args, name)
		case len(f) > 1 && f[0] == "RUN" && strings.Contains(l, "go build"):
			runs = append(runs, l)
		}
	}
	if len(runs) == 0 {
		t.Fatal("no RUN go build in the Dockerfile")
	}
	for _, run := range runs {
		got := xFlags(run)
		builds := strings.Count(run, "go build")
		if perBuild := strings.Count(run, "-ldflags="); perBuild != builds {
			t.Errorf("%d go build and %d -ldflags in %q: a binary built without the version", builds, perBuild, run)
		}
		for name, v := range want {
			if got[name] != v {
				t.Errorf("the Dockerfile sets -X %s from %q, want the build arg %s (make build: $(%s))", name, got[name], v, v)
				continue
			}
			if !slices.Contains(args, v) {
				t.Errorf("the Dockerfile has no ARG %s", v)
			}
			if !strings.Contains(imageTarget, "--build-arg "+v+"=$("+v+")") {
				t.Errorf("make image does not pass --build-arg %s=$(%s): %q", v, v, imageTarget)
			}
		}
		for name := range got {
			if _, ok := want[name]; !ok {
				t.Errorf("the Dockerfile sets -X %s, make build does not", name)
			}
		}
	}
}
