package charts

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/revoked-dev/revoked/authz"
	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/ingest"
	"github.com/revoked-dev/revoked/internal/testsupport"
	revsync "github.com/revoked-dev/revoked/sync"
)

// targetLabels are the labels Prometheus (and the Prometheus Operator's PodMonitor and
// ServiceMonitor) add to every series of a scrape target.
var targetLabels = []string{"pod", "namespace", "instance", "job", "container"}

// metric is a metric family the code registers: its type and its label names.
type metric struct {
	typ    string // counter, gauge, histogram, summary, untyped; "" when only described
	labels map[string]bool
}

// catalog holds the metric families of the live registries, by name.
type catalog map[string]*metric

// recorder is a live registry that also keeps what each registered collector describes:
// every family and its label names, even a vector with no child yet (the ingest API's
// counters have none before a request).
type recorder struct {
	*prometheus.Registry
	vecKinds map[string]string // family -> histogram or summary, from the collector's type
	descs    catalog
}

func newRecorder() *recorder {
	return &recorder{Registry: prometheus.NewRegistry(), vecKinds: map[string]string{}, descs: catalog{}}
}

func (r *recorder) Register(c prometheus.Collector) error {
	if err := r.Registry.Register(c); err != nil {
		return err
	}
	kind := ""
	switch c.(type) {
	case *prometheus.HistogramVec:
		kind = "histogram"
	case *prometheus.SummaryVec:
		kind = "summary"
	}
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	var err error
	for d := range ch {
		name, labels, perr := parseDesc(d.String())
		if perr != nil {
			err = perr
			continue
		}
		m := r.descs[name]
		if m == nil {
			m = &metric{labels: map[string]bool{}}
			r.descs[name] = m
		}
		for _, l := range labels {
			m.labels[l] = true
		}
		if kind != "" {
			r.vecKinds[name] = kind
		}
	}
	return err
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recorder) Unregister(c prometheus.Collector) bool { return r.Registry.Unregister(c) }

var descRE = regexp.MustCompile(`^Desc\{fqName: ("(?:[^"\\]|\\.)*"), help: "(?:[^"\\]|\\.)*", unit: "(?:[^"\\]|\\.)*", constLabels: \{(.*)\}, variableLabels: \{([^{}]*)\}\}$`)

// parseDesc reads a family's name and label names (constant and variable) from
// prometheus.Desc.String(), the only way a Desc shows them.
func parseDesc(s string) (string, []string, error) {
	m := descRE.FindStringSubmatch(s)
	if m == nil {
		return "", nil, fmt.Errorf("cannot read %s", s)
	}
	name, err := strconv.Unquote(m[1])
	if err != nil {
		return "", nil, err
	}
	var labels []string
	for rest := m[2]; rest != ""; {
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			return "", nil, fmt.Errorf("constant labels of %s", s)
		}
		q, err := strconv.QuotedPrefix(v)
		if err != nil {
			return "", nil, fmt.Errorf("constant labels of %s: %w", s, err)
		}
		labels = append(labels, k)
		rest = strings.TrimPrefix(v[len(q):], ",")
	}
	for _, l := range strings.Split(m[3], ",") {
		if l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"); l != "" {
			labels = append(labels, l)
		}
	}
	return name, labels, nil
}

// finish gathers the registry and completes the catalog with each family's type; a family
// gathered but never described, or with labels its description lacks, fails.
func (r *recorder) finish() (catalog, error) {
	mfs, err := r.Gather()
	if err != nil {
		return nil, err
	}
	for _, mf := range mfs {
		m := r.descs[mf.GetName()]
		if m == nil {
			return nil, fmt.Errorf("%s gathered but not described", mf.GetName())
		}
		m.typ = strings.ToLower(dto.MetricType_name[int32(mf.GetType())])
		if m.typ == "gauge_histogram" {
			m.typ = "histogram"
		}
		for _, s := range mf.GetMetric() {
			for _, lp := range s.GetLabel() {
				if !m.labels[lp.GetName()] {
					return nil, fmt.Errorf("%s has label %s it does not describe", mf.GetName(), lp.GetName())
				}
			}
		}
	}
	for name, kind := range r.vecKinds {
		if r.descs[name].typ == "" {
			r.descs[name].typ = kind
		}
	}
	return r.descs, nil
}

// registered builds, once per test binary, the catalog of the metrics revoked serves: a
// sidecar's registry (the replica's metrics from revsync.New against a real NATS server,
// the check metrics from authz.NewMetrics, the Go and process collectors the sidecar
// registers) and the ingest API's (a real ingest server started with a minimal config).
func registered(t *testing.T) catalog {
	t.Helper()
	registeredOnce.Do(func() { registeredCat, registeredErr = buildCatalog(t) })
	if registeredErr != nil {
		t.Fatal(registeredErr)
	}
	return registeredCat
}

var (
	registeredOnce sync.Once
	registeredCat  catalog
	registeredErr  error
)

func buildCatalog(t *testing.T) (catalog, error) {
	ns := testsupport.StartNATS(t)

	// The sidecar's registry, built as internal/sidecar builds it.
	side := newRecorder()
	side.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if _, err := revsync.New(ns.Connect(), blocklist.New(), revsync.Options{Registerer: side, SnapshotBucket: "X"}); err != nil {
		return nil, fmt.Errorf("revsync.New: %w", err)
	}
	authz.NewMetrics(side)
	sc, err := side.finish()
	if err != nil {
		return nil, fmt.Errorf("sidecar registry: %w", err)
	}

	// The ingest API's registry, as `revoked ingest` builds it.
	ing := newRecorder()
	ing.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bearer := filepath.Join(t.TempDir(), "bearer")
	if err := os.WriteFile(bearer, []byte("a-bearer-token-of-the-test-0123456789"), 0o600); err != nil {
		return nil, err
	}
	cfg := &ingest.Config{
		Listen: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", BearerTokenFile: bearer,
		LogoutMaxAge: ingest.DefaultLogoutMaxAge, AckTimeout: time.Second, Attempts: 1, MaxBody: ingest.DefaultMaxBody,
	}
	cfg.Stream, cfg.SubjectPrefix = event.DefaultStream, event.DefaultSubjectPrefix
	cfg.NATS.URL = ns.URL()
	srv, err := ingest.Start(context.Background(), cfg, nil, ing)
	if err != nil {
		return nil, fmt.Errorf("ingest.Start: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	defer srv.Close(ctx) //nolint:errcheck
	ic, err := ing.finish()
	if err != nil {
		return nil, fmt.Errorf("ingest registry: %w", err)
	}

	out := catalog{}
	for _, c := range []catalog{sc, ic} {
		for name, m := range c {
			if prev, ok := out[name]; ok {
				if prev.typ != m.typ || !maps.Equal(prev.labels, m.labels) {
					return nil, fmt.Errorf("%s is registered twice, differently: %+v and %+v", name, prev, m)
				}
				continue
			}
			out[name] = m
		}
	}
	return out, nil
}

// series returns the label names a series of that name has (the family's labels, the
// target labels, le for a histogram's buckets, quantile for a summary), or false when no
// registered family exposes it.
func (c catalog) series(name string) (map[string]bool, bool) {
	with := func(m *metric, extra ...string) map[string]bool {
		out := maps.Clone(m.labels)
		for _, l := range append(slices.Clone(targetLabels), extra...) {
			out[l] = true
		}
		return out
	}
	if m, ok := c[name]; ok {
		switch m.typ {
		case "histogram":
			return nil, false // a classic histogram has no series by its bare name
		case "summary":
			return with(m, "quantile"), true
		}
		return with(m), true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		m, ok := c[base]
		if !ok || (m.typ != "histogram" && m.typ != "summary") || (suffix == "_bucket" && m.typ != "histogram") {
			continue
		}
		if suffix == "_bucket" {
			return with(m, "le"), true
		}
		return with(m), true
	}
	return nil, false
}

// promql is what checkExpr learned about an expression: the metrics it names.
type promql struct {
	metrics map[string]bool
}

// checkExpr parses expr with Prometheus's own parser and checks it against the catalog:
// every selector names a registered series, every label matcher names a label of that
// series, and every label of by, without, on, ignoring and group_left/group_right is one
// the expression it applies to has. It returns the label names of the result.
func checkExpr(c catalog, expr string) (map[string]bool, *promql, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, nil, err
	}
	info := &promql{metrics: map[string]bool{}}
	var errs []string
	out := inferLabels(c, e, info, &errs)
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return out, info, nil
}

// inferLabels walks the expression and returns the label names of its result (nil for a
// scalar or a string), appending every fault to errs.
func inferLabels(c catalog, e parser.Expr, info *promql, errs *[]string) map[string]bool {
	fail := func(format string, args ...any) { *errs = append(*errs, fmt.Sprintf(format, args...)) }
	need := func(labels []string, have map[string]bool, where string) {
		for _, l := range labels {
			if !have[l] {
				fail("%s: label %q is not a label of %s", where, l, keys(have))
			}
		}
	}
	switch n := e.(type) {
	case *parser.NumberLiteral, *parser.StringLiteral:
		return nil
	case *parser.ParenExpr:
		return inferLabels(c, n.Expr, info, errs)
	case *parser.UnaryExpr:
		return inferLabels(c, n.Expr, info, errs)
	case *parser.StepInvariantExpr:
		return inferLabels(c, n.Expr, info, errs)
	case *parser.SubqueryExpr:
		return inferLabels(c, n.Expr, info, errs)
	case *parser.MatrixSelector:
		return inferLabels(c, n.VectorSelector, info, errs)
	case *parser.VectorSelector:
		name := n.Name
		if name == "" {
			for _, m := range n.LabelMatchers {
				if m.Name == "__name__" && m.Type.String() == "=" {
					name = m.Value
				}
			}
		}
		if name == "" {
			fail("%s: a selector without a metric name", n)
			return map[string]bool{}
		}
		info.metrics[name] = true
		labels, ok := c.series(name)
		if !ok {
			fail("%s: no registered metric exposes series %s", n, name)
			return map[string]bool{}
		}
		for _, m := range n.LabelMatchers {
			if m.Name != "__name__" && !labels[m.Name] {
				fail("%s: %s has no label %q (it has %s)", n, name, m.Name, keys(labels))
			}
		}
		labels["__name__"] = true
		return labels
	case *parser.Call:
		var args []map[string]bool
		for _, a := range n.Args {
			args = append(args, inferLabels(c, a, info, errs))
		}
		first := func() map[string]bool {
			for i, a := range n.Args {
				if t := a.Type(); t == parser.ValueTypeVector || t == parser.ValueTypeMatrix {
					return args[i]
				}
			}
			return nil
		}
		switch n.Func.Name {
		case "histogram_quantile", "histogram_fraction":
			in := args[len(args)-1]
			need([]string{"le"}, in, n.Func.Name)
			out := maps.Clone(in)
			delete(out, "le")
			delete(out, "__name__")
			return out
		case "label_replace", "label_join":
			out := maps.Clone(args[0])
			if s, ok := n.Args[1].(*parser.StringLiteral); ok {
				out[s.Val] = true
			}
			return out
		case "vector", "time", "scalar", "pi":
			return nil
		}
		out := maps.Clone(first())
		if out != nil {
			delete(out, "__name__")
		}
		return out
	case *parser.AggregateExpr:
		in := inferLabels(c, n.Expr, info, errs)
		if n.Param != nil {
			inferLabels(c, n.Param, info, errs)
		}
		where := n.Op.String() + " by/without"
		need(n.Grouping, in, where)
		switch {
		case n.Op == parser.TOPK || n.Op == parser.BOTTOMK || n.Op == parser.LIMITK || n.Op == parser.LIMIT_RATIO:
			return in
		case n.Without:
			out := maps.Clone(in)
			for _, l := range n.Grouping {
				delete(out, l)
			}
			delete(out, "__name__")
			return out
		}
		out := map[string]bool{}
		for _, l := range n.Grouping {
			out[l] = true
		}
		if n.Op == parser.COUNT_VALUES {
			if s, ok := n.Param.(*parser.StringLiteral); ok {
				out[s.Val] = true
			}
		}
		return out
	case *parser.BinaryExpr:
		l := inferLabels(c, n.LHS, info, errs)
		r := inferLabels(c, n.RHS, info, errs)
		if l == nil {
			return r
		}
		if r == nil {
			return l
		}
		vm := n.VectorMatching
		if vm == nil {
			return l
		}
		if len(vm.MatchingLabels) > 0 {
			need(vm.MatchingLabels, l, "left side of "+n.Op.String()+" on/ignoring")
			need(vm.MatchingLabels, r, "right side of "+n.Op.String()+" on/ignoring")
		}
		switch vm.Card {
		case parser.CardManyToOne:
			need(vm.Include, r, "group_left")
			out := maps.Clone(l)
			for _, x := range vm.Include {
				out[x] = true
			}
			return out
		case parser.CardOneToMany:
			need(vm.Include, l, "group_right")
			out := maps.Clone(r)
			for _, x := range vm.Include {
				out[x] = true
			}
			return out
		}
		if n.Op == parser.LOR {
			out := maps.Clone(l)
			maps.Copy(out, r)
			return out
		}
		return l
	}
	fail("unexpected node %T in %s", e, e)
	return nil
}

func keys(m map[string]bool) string {
	return "[" + strings.Join(slices.Sorted(maps.Keys(m)), " ") + "]"
}

// TestCatalogIsLive makes sure the catalog is the code's: it holds the metrics the
// dashboard and the alerts are about, with their labels, and would refuse a typo.
func TestCatalogIsLive(t *testing.T) {
	c := registered(t)
	want := map[string][]string{
		"revoked_checks_total":                  {"decision", "reason"},
		"revoked_events_rejected_total":         {"reason"},
		"revoked_blocklist_entries":             {"kind"},
		"revoked_snapshot_loads_total":          {"result"},
		"revoked_ingest_requests_total":         {"endpoint", "code"},
		"revoked_sync_propagation_seconds":      nil,
		"revoked_check_duration_seconds":        nil,
		"process_resident_memory_bytes":         nil,
		"revoked_ingest_nats_connected":         nil,
		"revoked_sync_staleness_seconds":        nil,
		"revoked_sync_lag_messages":             nil,
		"revoked_sync_ready":                    nil,
		"revoked_sync_connected":                nil,
		"revoked_blocklist_capacity":            nil,
		"revoked_blocklist_memory_bytes":        nil,
		"revoked_sync_stream_resets_total":      nil,
		"revoked_ingest_events_published_total": {"endpoint"},
	}
	for name, labels := range want {
		m, ok := c[name]
		if !ok {
			t.Errorf("%s is not registered", name)
			continue
		}
		for _, l := range labels {
			if !m.labels[l] {
				t.Errorf("%s has no label %s: %s", name, l, keys(m.labels))
			}
		}
	}
	for _, name := range []string{"revoked_sync_propagation_seconds", "revoked_check_duration_seconds", "revoked_ingest_request_duration_seconds"} {
		if c[name] == nil || c[name].typ != "histogram" {
			t.Errorf("%s: %+v, want a histogram", name, c[name])
		}
	}
	bad := map[string]string{
		"unknown metric":            `rate(revoked_checks_totl[5m])`,
		"unknown label":             `revoked_checks_total{decison="deny"}`,
		"by a label it lacks":       `sum by (reason) (revoked_sync_ready)`,
		"by a label aggregated out": `sum by (pod) (sum by (reason) (rate(revoked_checks_total[5m])))`,
		"histogram without suffix":  `rate(revoked_sync_propagation_seconds[5m])`,
		"le on a counter":           `histogram_quantile(0.99, rate(revoked_checks_total[5m]))`,
		"on a label one side lacks": `revoked_sync_ready and on (reason) revoked_checks_total`,
		"not PromQL":                `sum(rate(revoked_checks_total[5m])`,
	}
	for name, expr := range bad {
		if _, _, err := checkExpr(c, expr); err == nil {
			t.Errorf("%s: %s accepted", name, expr)
		}
	}
	good := []string{
		`histogram_quantile(0.99, sum by (namespace, pod, le) (rate(revoked_sync_propagation_seconds_bucket{pod=~".+"}[5m])))`,
		`sum without (kind) (revoked_blocklist_entries) / revoked_blocklist_capacity > 0.8`,
		`go_gc_duration_seconds{quantile="0.5"}`,
		`rate(revoked_ingest_request_duration_seconds_count{endpoint="x", job="j"}[1m])`,
	}
	for _, expr := range good {
		if _, _, err := checkExpr(c, expr); err != nil {
			t.Errorf("%s: %v", expr, err)
		}
	}
}
