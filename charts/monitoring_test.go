package charts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// The Prometheus Operator's resources (monitoring.coreos.com/v1), as far as the chart
// renders them. They are decoded strictly: a field the chart renders that is not here (a
// typo, a field at the wrong level) fails the test. The operator's Go types are not a
// dependency: these mirror its CRDs' field names.

type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []ruleGroup `json:"groups"`
	} `json:"spec"`
}

type ruleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []rule `json:"rules"`
}

type rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type namespaceSelector struct {
	Any        bool     `json:"any,omitempty"`
	MatchNames []string `json:"matchNames,omitempty"`
}

type relabelConfig struct {
	SourceLabels []string `json:"sourceLabels,omitempty"`
	Separator    *string  `json:"separator,omitempty"`
	TargetLabel  string   `json:"targetLabel,omitempty"`
	Regex        string   `json:"regex,omitempty"`
	Modulus      uint64   `json:"modulus,omitempty"`
	Replacement  *string  `json:"replacement,omitempty"`
	Action       string   `json:"action,omitempty"`
}

type scrapeEndpoint struct {
	Port              string          `json:"port"`
	Path              string          `json:"path"`
	Scheme            string          `json:"scheme,omitempty"`
	Interval          string          `json:"interval,omitempty"`
	ScrapeTimeout     string          `json:"scrapeTimeout,omitempty"`
	Relabelings       []relabelConfig `json:"relabelings,omitempty"`
	MetricRelabelings []relabelConfig `json:"metricRelabelings,omitempty"`
}

type podMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector            metav1.LabelSelector `json:"selector"`
		NamespaceSelector   namespaceSelector    `json:"namespaceSelector"`
		PodMetricsEndpoints []scrapeEndpoint     `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector namespaceSelector    `json:"namespaceSelector"`
		Endpoints         []scrapeEndpoint     `json:"endpoints"`
	} `json:"spec"`
}

// pack holds the Prometheus Operator's resources of one helm template run.
type pack struct {
	rules           []prometheusRule
	podMonitors     []podMonitor
	serviceMonitors []serviceMonitor
}

// decode decodes one monitoring.coreos.com/v1 document strictly into its type.
func (p *pack) decode(kind, doc string) error {
	var err error
	switch kind {
	case "PrometheusRule":
		p.rules = append(p.rules, strict[prometheusRule](doc, &err))
	case "PodMonitor":
		p.podMonitors = append(p.podMonitors, strict[podMonitor](doc, &err))
	case "ServiceMonitor":
		p.serviceMonitors = append(p.serviceMonitors, strict[serviceMonitor](doc, &err))
	default:
		err = fmt.Errorf("unexpected monitoring.coreos.com/v1 %s", kind)
	}
	return err
}

// renderPack runs helm template and returns the manifests and their Prometheus
// Operator resources.
func renderPack(t *testing.T, args ...string) (*manifests, *pack) {
	t.Helper()
	m := render(t, args...)
	return m, &m.pack
}

// promDurationRE is the pattern of the operator's Duration type (for, interval,
// scrapeTimeout).
var promDurationRE = regexp.MustCompile(`^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$`)

func checkPromDuration(t *testing.T, where, d string) {
	t.Helper()
	if !promDurationRE.MatchString(d) {
		t.Errorf("%s: %q is not a Prometheus Operator duration", where, d)
	}
	if _, err := model.ParseDuration(d); err != nil {
		t.Errorf("%s: %v", where, err)
	}
}

// grafanaDashboard is the part of Grafana's dashboard model (JSON, schemaVersion 39) the
// chart's dashboard uses and Grafana needs. Unknown fields are allowed: the model has many.
type grafanaDashboard struct {
	Title         string         `json:"title"`
	UID           string         `json:"uid"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []grafanaVariable `json:"list"`
	} `json:"templating"`
	Time *struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"time"`
}

type grafanaDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaPanel struct {
	ID         int                `json:"id"`
	Type       string             `json:"type"`
	Title      string             `json:"title"`
	Datasource *grafanaDatasource `json:"datasource"`
	GridPos    *struct {
		H int `json:"h"`
		W int `json:"w"`
		X int `json:"x"`
		Y int `json:"y"`
	} `json:"gridPos"`
	Targets []struct {
		Datasource   *grafanaDatasource `json:"datasource"`
		RefID        string             `json:"refId"`
		Expr         string             `json:"expr"`
		LegendFormat string             `json:"legendFormat"`
	} `json:"targets"`
	Panels    []grafanaPanel `json:"panels"` // a collapsed row's
	Collapsed bool           `json:"collapsed"`
}

type grafanaVariable struct {
	Name       string             `json:"name"`
	Type       string             `json:"type"`
	Datasource *grafanaDatasource `json:"datasource"`
	Definition string             `json:"definition"`
	Query      json.RawMessage    `json:"query"`
}

// dashboardVars replaces Grafana's own variables and the dashboard's by values PromQL
// accepts, so the expressions can be parsed as Prometheus will get them.
func dashboardVars(expr string, vars []string) (string, error) {
	r := []string{"$__rate_interval", "5m", "${__rate_interval}", "5m", "$__interval", "1m", "$__range", "6h"}
	for _, v := range vars {
		r = append(r, "${"+v+"}", "x", "$"+v, "x")
	}
	out := strings.NewReplacer(r...).Replace(expr)
	if i := strings.Index(out, "$"); i >= 0 {
		return "", fmt.Errorf("unknown variable at %q", out[i:])
	}
	return out, nil
}

var labelValuesRE = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// readDashboard reads and checks the dashboard JSON against Grafana's model; it returns
// the PromQL of its panels' targets by panel title.
func readDashboard(t *testing.T, data []byte) (grafanaDashboard, map[string][]string) {
	t.Helper()
	var d grafanaDashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("the dashboard is not JSON of a dashboard: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.UID) > 40 || d.SchemaVersion < 36 || len(d.Panels) == 0 || d.Time == nil {
		t.Fatalf("title %q, uid %q (at most 40 characters), schemaVersion %d (want 36 or more), %d panels, time %v: Grafana needs them",
			d.Title, d.UID, d.SchemaVersion, len(d.Panels), d.Time)
	}
	var vars []string
	dsVar := ""
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
		if v.Type == "datasource" {
			dsVar = v.Name
		}
	}
	if dsVar == "" {
		t.Fatal("no datasource variable: the panels would need a data source uid of one Grafana")
	}
	checkDS := func(where string, ds *grafanaDatasource) {
		if ds == nil || ds.Type != "prometheus" || (ds.UID != "${"+dsVar+"}" && ds.UID != "$"+dsVar) {
			t.Errorf("%s: datasource %+v, want Prometheus through ${%s}", where, ds, dsVar)
		}
	}
	c := registered(t)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		checkDS("variable "+v.Name, v.Datasource)
		q := v.Definition
		var qo struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &qo); err == nil && qo.Query != "" {
			q = qo.Query
		} else if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Errorf("variable %s: query %s", v.Name, v.Query)
		}
		m := labelValuesRE.FindStringSubmatch(q)
		if m == nil {
			t.Errorf("variable %s: query %q, want label_values(selector, label)", v.Name, q)
			continue
		}
		sel, err := dashboardVars(m[1], vars)
		if err != nil {
			t.Errorf("variable %s: %v", v.Name, err)
			continue
		}
		// The label listed must be one of the selector's series.
		if _, _, err := checkExpr(c, fmt.Sprintf("count by (%s) (%s)", m[2], sel)); err != nil {
			t.Errorf("variable %s: %q: %v", v.Name, q, err)
		}
	}

	type rect struct{ x, y, w, h int }
	var placed []rect
	var placedBy []string
	ids := map[int]string{}
	exprs := map[string][]string{}
	var walk func(ps []grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if p.Type == "" || p.Title == "" || p.GridPos == nil {
				t.Errorf("%s: type %q, title %q, gridPos %v: Grafana needs them", where, p.Type, p.Title, p.GridPos)
				continue
			}
			if prev, ok := ids[p.ID]; ok || p.ID <= 0 {
				t.Errorf("%s: id %d not unique and positive (also %s)", where, p.ID, prev)
			}
			ids[p.ID] = p.Title
			g := *p.GridPos
			if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
				t.Errorf("%s: gridPos %+v outside the 24-column grid", where, g)
			}
			r := rect{g.X, g.Y, g.W, g.H}
			for i, o := range placed {
				if r.x < o.x+o.w && o.x < r.x+r.w && r.y < o.y+o.h && o.y < r.y+r.h {
					t.Errorf("%s: gridPos %+v overlaps %s", where, g, placedBy[i])
				}
			}
			placed, placedBy = append(placed, r), append(placedBy, where)
			if p.Type == "row" {
				if len(p.Targets) > 0 {
					t.Errorf("%s: a row with targets", where)
				}
				if p.Collapsed {
					walk(p.Panels)
				} else if len(p.Panels) > 0 {
					t.Errorf("%s: an open row holding panels", where)
				}
				continue
			}
			checkDS(where, p.Datasource)
			if len(p.Targets) == 0 {
				t.Errorf("%s: no targets", where)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if tg.RefID == "" || refs[tg.RefID] {
					t.Errorf("%s: refId %q empty or repeated", where, tg.RefID)
				}
				refs[tg.RefID] = true
				if tg.Datasource != nil {
					checkDS(where+" target "+tg.RefID, tg.Datasource)
				}
				if tg.Expr == "" {
					t.Errorf("%s: target %s has no expr", where, tg.RefID)
					continue
				}
				e, err := dashboardVars(tg.Expr, vars)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				exprs[p.Title] = append(exprs[p.Title], e)
			}
		}
	}
	walk(d.Panels)
	return d, exprs
}

// metricsOf checks every expression with checkExpr and returns the metrics they name.
func metricsOf(t *testing.T, where string, exprs []string) map[string]bool {
	t.Helper()
	c := registered(t)
	out := map[string]bool{}
	for _, e := range exprs {
		_, info, err := checkExpr(c, e)
		if err != nil {
			t.Errorf("%s: %s: %v", where, e, err)
			continue
		}
		for m := range info.metrics {
			out[m] = true
		}
	}
	return out
}

// TestDashboard checks the dashboard file itself: Grafana's model, and every PromQL of it
// parsed by Prometheus's parser and checked against the metrics the code registers.
func TestDashboard(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir, "dashboards", "revoked.json"))
	if err != nil {
		t.Fatal(err)
	}
	_, exprs := readDashboard(t, data)
	seen := map[string]bool{}
	for title, es := range exprs {
		for m := range metricsOf(t, "panel "+title, es) {
			seen[m] = true
		}
	}
	// What an operator must see at a glance (issue 10, item 2).
	for _, m := range []string{
		"revoked_checks_total", "revoked_check_duration_seconds_bucket", "revoked_sync_propagation_seconds_bucket",
		"revoked_sync_staleness_seconds", "revoked_sync_lag_messages", "revoked_sync_ready", "revoked_events_rejected_total",
		"revoked_blocklist_entries", "revoked_blocklist_capacity", "revoked_sync_stream_resets_total", "revoked_sync_connected",
	} {
		if !seen[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
}

// alertTemplate runs an annotation as Prometheus does (text/template with $labels,
// $value and its functions), with the labels the alert's expression gives.
func alertTemplate(text string, labelNames map[string]bool) error {
	funcs := template.FuncMap{}
	for _, f := range []string{"humanize", "humanize1024", "humanizeDuration", "humanizePercentage", "humanizeTimestamp", "title", "toUpper", "toLower", "reReplaceAll", "match", "first", "label", "value", "query", "strvalue", "sortByLabel", "graphLink", "tableLink", "args", "safeHtml", "externalURL", "pathPrefix", "parseDuration", "stripPort", "stripDomain", "toTime", "toDuration", "urlQueryEscape", "now"} {
		funcs[f] = func(...any) string { return "x" }
	}
	tmpl, err := template.New("a").Option("missingkey=error").Funcs(funcs).Parse(
		"{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}" + text)
	if err != nil {
		return err
	}
	lbls := map[string]string{}
	for l := range labelNames {
		lbls[l] = "v"
	}
	var buf bytes.Buffer
	err = tmpl.Execute(&buf, struct {
		Labels, ExternalLabels map[string]string
		ExternalURL            string
		Value                  float64
	}{lbls, map[string]string{}, "", 1})
	return err
}

// checkRules checks a PrometheusRule: each alert's expression parsed by Prometheus and
// checked against the registered metrics, durations valid, labels and annotations in
// place, and the annotations naming only labels the expression's result has.
func checkRules(t *testing.T, pr prometheusRule, alertLabels map[string]string) map[string]rule {
	t.Helper()
	c := registered(t)
	alerts := map[string]rule{}
	for _, g := range pr.Spec.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q with %d rules", g.Name, len(g.Rules))
		}
		if g.Interval != "" {
			checkPromDuration(t, "group "+g.Name+" interval", g.Interval)
		}
		for _, r := range g.Rules {
			if !model.UTF8Validation.IsValidMetricName(r.Alert) || r.Record != "" {
				t.Errorf("rule %+v: want an alert with a valid name", r)
				continue
			}
			if _, dup := alerts[r.Alert]; dup {
				t.Errorf("alert %s twice", r.Alert)
			}
			alerts[r.Alert] = r
			out, _, err := checkExpr(c, r.Expr)
			if err != nil {
				t.Errorf("%s: %s: %v", r.Alert, r.Expr, err)
				continue
			}
			if r.For != "" {
				checkPromDuration(t, r.Alert+" for", r.For)
			}
			if r.Labels["severity"] == "" {
				t.Errorf("%s: no severity label", r.Alert)
			}
			for k, v := range alertLabels {
				if r.Labels[k] != v {
					t.Errorf("%s: label %s=%q, want %q from alertLabels", r.Alert, k, r.Labels[k], v)
				}
			}
			for k := range r.Labels {
				if !model.LabelName(k).IsValid() {
					t.Errorf("%s: label name %q", r.Alert, k)
				}
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: no summary or description", r.Alert)
			}
			for k, a := range r.Annotations {
				if err := alertTemplate(a, out); err != nil {
					t.Errorf("%s: annotation %s: %v (the expression's result has labels %s)", r.Alert, k, err, keys(out))
				}
			}
		}
	}
	return alerts
}

// threshold returns the number an alert's expression compares its result with.
func threshold(t *testing.T, expr string) float64 {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		t.Fatal(err)
	}
	b, ok := e.(*parser.BinaryExpr)
	if !ok || !b.Op.IsComparisonOperator() {
		t.Fatalf("%s is not a comparison", expr)
	}
	n, ok := b.RHS.(*parser.NumberLiteral)
	if !ok {
		t.Fatalf("%s: the right side is not a number", expr)
	}
	return n.Val
}

// checkMonitoring checks the pack rendered with ci/monitoring-values.yaml: the dashboard in
// its ConfigMap for Grafana's sidecar, the alerts, and the monitors pointing at the ports
// the sidecar and the ingest API serve /metrics on.
func checkMonitoring(t *testing.T, m *manifests, p *pack) {
	t.Helper()
	// The dashboard.
	var dash []corev1.ConfigMap
	for _, cm := range m.configMaps {
		if cm.Labels["grafana_dashboard"] != "" {
			dash = append(dash, cm)
		}
	}
	if len(dash) != 1 {
		t.Fatalf("%d ConfigMaps labelled grafana_dashboard, want 1", len(dash))
	}
	cm := dash[0]
	if cm.Labels["grafana_dashboard"] != "1" || cm.Annotations["grafana_folder"] != "revoked" {
		t.Errorf("dashboard ConfigMap labels %v, annotations %v: want grafana_dashboard=1 and the folder", cm.Labels, cm.Annotations)
	}
	file, err := os.ReadFile(filepath.Join(chartDir, "dashboards", "revoked.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cm.Data) != 1 || strings.TrimSpace(cm.Data["revoked.json"]) != strings.TrimSpace(string(file)) {
		t.Errorf("the ConfigMap holds %d keys; revoked.json is not dashboards/revoked.json", len(cm.Data))
	}
	readDashboard(t, []byte(cm.Data["revoked.json"]))

	// The alerts.
	if len(p.rules) != 1 {
		t.Fatalf("%d PrometheusRules, want 1", len(p.rules))
	}
	pr := p.rules[0]
	if pr.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("PrometheusRule labels %v: monitoring.labels missing", pr.Labels)
	}
	alerts := checkRules(t, pr, map[string]string{"team": "identity"})
	want := map[string]string{ // alert -> a metric its expression must name
		"RevokedReplicaStale":          "revoked_sync_staleness_seconds",
		"RevokedReplicaNotReady":       "revoked_sync_ready",
		"RevokedPropagationSlow":       "revoked_sync_propagation_seconds_bucket",
		"RevokedEventsRejected":        "revoked_events_rejected_total",
		"RevokedBlocklistNearCapacity": "revoked_blocklist_capacity",
		"RevokedNATSDisconnected":      "revoked_sync_connected",
		"RevokedStreamReset":           "revoked_sync_stream_resets_total",
		"RevokedSnapshotLoadFailed":    "revoked_snapshot_loads_total",
	}
	for name, metric := range want {
		r, ok := alerts[name]
		if !ok {
			t.Errorf("no alert %s", name)
			continue
		}
		if _, info, err := checkExpr(registered(t), r.Expr); err == nil && !info.metrics[metric] {
			t.Errorf("%s: %s does not use %s", name, r.Expr, metric)
		}
	}
	if len(alerts) != len(want) {
		t.Errorf("%d alerts, want %d", len(alerts), len(want))
	}

	// The PodMonitor: the sidecar's admin port, in the pods that run it.
	if len(p.podMonitors) != 1 {
		t.Fatalf("%d PodMonitors, want 1", len(p.podMonitors))
	}
	pm := p.podMonitors[0]
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("PodMonitor endpoints %+v", pm.Spec.PodMetricsEndpoints)
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	checkScrapeEndpoint(t, "PodMonitor", ep)
	sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pm.Spec.NamespaceSelector.MatchNames, []string{"ns"}) && !pm.Spec.NamespaceSelector.Any {
		t.Errorf("PodMonitor namespaces %+v, want the release's", pm.Spec.NamespaceSelector)
	}
	scraped := 0
	for _, pod := range m.podSpecs() {
		var port int32
		hasPort := false
		sidecar := false
		for _, c := range append(slices.Clone(pod.spec.InitContainers), pod.spec.Containers...) {
			if pp, ok := namedPort(c, ep.Port); ok {
				port, hasPort = pp, true
				if c.Name != "revoked" {
					t.Errorf("%s: container %s has port %s", pod.name, c.Name, ep.Port)
				}
				if _, lport := splitPort(t, flags(c)["admin-addr"]); lport != port {
					t.Errorf("%s: the PodMonitor scrapes %d, --admin-addr is on %d", pod.name, port, lport)
				}
			}
			sidecar = sidecar || c.Name == "revoked"
		}
		if sidecar && !hasPort {
			t.Errorf("%s runs revoked without port %s: the PodMonitor would miss it", pod.name, ep.Port)
		}
		if hasPort && sel.Matches(labels.Set(pod.meta)) {
			scraped++
		}
	}
	if scraped < 2 { // the example and the helm test pod
		t.Errorf("the PodMonitor scrapes %d pods, want the example's and the test pod", scraped)
	}

	// The ServiceMonitor: the ingest Service's admin port, not the API's.
	if len(p.serviceMonitors) != 1 {
		t.Fatalf("%d ServiceMonitors, want 1", len(p.serviceMonitors))
	}
	sm := p.serviceMonitors[0]
	ssel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{"ns"}) {
		t.Errorf("ServiceMonitor namespaces %+v, want the release's", sm.Spec.NamespaceSelector)
	}
	var selected []string
	for _, s := range m.services {
		if !ssel.Matches(labels.Set(s.Labels)) {
			continue
		}
		selected = append(selected, s.Name)
		if len(sm.Spec.Endpoints) != 1 {
			t.Fatalf("ServiceMonitor endpoints %+v", sm.Spec.Endpoints)
		}
		ep := sm.Spec.Endpoints[0]
		checkScrapeEndpoint(t, "ServiceMonitor", ep)
		var target string
		for _, sp := range s.Spec.Ports {
			if sp.Name == ep.Port {
				target = sp.TargetPort.StrVal
			}
		}
		var dep *corev1.PodSpec
		for _, d := range m.deployments {
			if strings.HasSuffix(d.Name, "-ingest") {
				dep = &d.Spec.Template.Spec
			}
		}
		if dep == nil {
			t.Fatal("no ingest Deployment")
		}
		c := container(t, *dep, "ingest")
		port, ok := namedPort(c, target)
		if !ok {
			t.Fatalf("Service %s port %s targets %q, not a port of the ingest container", s.Name, ep.Port, target)
		}
		if _, lport := splitPort(t, flags(c)["admin-addr"]); lport != port {
			t.Errorf("the ServiceMonitor scrapes port %d, ingest serves /metrics on --admin-addr %d", port, lport)
		}
		if _, api := splitPort(t, flags(c)["listen"]); api == port {
			t.Error("the ServiceMonitor scrapes the API port")
		}
	}
	if len(selected) != 1 || !strings.HasSuffix(selected[0], "-ingest-admin") {
		t.Errorf("the ServiceMonitor selects Services %v, want the ingest admin Service", selected)
	}
}

func checkScrapeEndpoint(t *testing.T, where string, ep scrapeEndpoint) {
	t.Helper()
	if ep.Path != "/metrics" || (ep.Scheme != "" && ep.Scheme != "http") {
		t.Errorf("%s: scrapes %s://…%s, want http /metrics (the admin port serves plain HTTP)", where, ep.Scheme, ep.Path)
	}
	for _, d := range []string{ep.Interval, ep.ScrapeTimeout} {
		if d != "" {
			checkPromDuration(t, where, d)
		}
	}
}

// TestMonitoringOff renders the defaults: none of the pack.
func TestMonitoringOff(t *testing.T) {
	m, p := renderPack(t, "--set", "sidecar.allowAnyAudience=true")
	if len(p.rules)+len(p.podMonitors)+len(p.serviceMonitors) > 0 {
		t.Errorf("rendered by default: %v", m.kinds)
	}
	for _, cm := range m.configMaps {
		if strings.Contains(cm.Name, "dashboard") {
			t.Errorf("dashboard ConfigMap %s rendered by default", cm.Name)
		}
	}
}

// TestMonitoringValues shows the values reaching the pack: thresholds, for, severities,
// namespaces, the dashboard's label and folder, and alerts turned off one by one.
func TestMonitoringValues(t *testing.T) {
	sets := []string{
		"sidecar.allowAnyAudience=true",
		"monitoring.prometheusRule.enabled=true", "monitoring.dashboard.enabled=true", "monitoring.podMonitor.enabled=true",
		"monitoring.serviceMonitor.enabled=true",
		"monitoring.prometheusRule.namespace=monitoring", "monitoring.dashboard.namespace=grafana",
		"monitoring.dashboard.label=dashboards", "monitoring.dashboard.labelValue=revoked",
		"monitoring.dashboard.folderAnnotation=k8s-sidecar-target-directory", "monitoring.dashboard.folder=/tmp/dashboards/Security",
		"monitoring.podMonitor.namespace=monitoring", "monitoring.podMonitor.namespaceSelector.any=true",
		"monitoring.podMonitor.selector.matchLabels.revoked=sidecar",
		"monitoring.prometheusRule.alerts.stale.thresholdSeconds=123", "monitoring.prometheusRule.alerts.stale.for=7m",
		"monitoring.prometheusRule.alerts.stale.severity=page",
		"monitoring.prometheusRule.alerts.propagationSlow.window=10m", "monitoring.prometheusRule.alerts.rejectedEvents.threshold=5",
		"monitoring.prometheusRule.alerts.rejectedEvents.ignoreReasons=null",
		"monitoring.prometheusRule.alerts.notReady.enabled=false", "monitoring.prometheusRule.interval=1m",
		"monitoring.prometheusRule.alertLabels.severity=ignored",
	}
	var args []string
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	// --set reads 0.25 as a string; the schema wants numbers.
	args = append(args, "--set-json", "monitoring.prometheusRule.alerts.propagationSlow.p99Seconds=0.25",
		"--set-json", "monitoring.prometheusRule.alerts.nearCapacity.ratio=0.9")
	m, p := renderPack(t, args...)
	if len(p.serviceMonitors) != 0 {
		t.Error("a ServiceMonitor without the ingest API")
	}
	if len(p.rules) != 1 || len(p.podMonitors) != 1 {
		t.Fatalf("%v", m.kinds)
	}
	pr := p.rules[0]
	if pr.Namespace != "monitoring" || pr.Spec.Groups[0].Interval != "1m" {
		t.Errorf("PrometheusRule namespace %s, interval %s", pr.Namespace, pr.Spec.Groups[0].Interval)
	}
	alerts := checkRules(t, pr, nil)
	if _, ok := alerts["RevokedReplicaNotReady"]; ok {
		t.Error("RevokedReplicaNotReady rendered though disabled")
	}
	for name, want := range map[string]float64{"RevokedReplicaStale": 123, "RevokedPropagationSlow": 0.25, "RevokedBlocklistNearCapacity": 0.9, "RevokedEventsRejected": 5} {
		if got := threshold(t, alerts[name].Expr); got != want {
			t.Errorf("%s: threshold %v, want %v", name, got, want)
		}
	}
	if r := alerts["RevokedReplicaStale"]; r.For != "7m" || r.Labels["severity"] != "page" {
		t.Errorf("RevokedReplicaStale for %s, labels %v: want 7m and severity page (alertLabels do not override it)", r.For, r.Labels)
	}
	if e := alerts["RevokedPropagationSlow"].Expr; !strings.Contains(e, "[10m]") {
		t.Errorf("RevokedPropagationSlow %s: window 10m missing", e)
	}
	if e := alerts["RevokedEventsRejected"].Expr; strings.Contains(e, "expired") {
		t.Errorf("RevokedEventsRejected %s still leaves out expired", e)
	}
	pm := p.podMonitors[0]
	if pm.Namespace != "monitoring" || !pm.Spec.NamespaceSelector.Any || pm.Spec.Selector.MatchLabels["revoked"] != "sidecar" {
		t.Errorf("PodMonitor %s: selector %+v, namespaces %+v", pm.Namespace, pm.Spec.Selector, pm.Spec.NamespaceSelector)
	}
	found := false
	for _, cm := range m.configMaps {
		if cm.Labels["dashboards"] == "revoked" {
			found = true
			if cm.Namespace != "grafana" || cm.Annotations["k8s-sidecar-target-directory"] != "/tmp/dashboards/Security" {
				t.Errorf("dashboard ConfigMap in %s, annotations %v", cm.Namespace, cm.Annotations)
			}
		}
	}
	if !found {
		t.Error("no dashboard ConfigMap with label dashboards=revoked")
	}
}
