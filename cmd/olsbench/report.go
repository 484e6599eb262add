package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// writeReportFile renders the result lines in path as a Markdown table.
func writeReportFile(path string, w io.Writer) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	table, err := renderReport(b)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	_, err = io.WriteString(w, table)
	return err
}

// renderReport turns result JSON lines into a Markdown table, one row per
// line in file order. Lines that are not JSON objects are skipped, so a file
// collected with tee may hold stray output.
func renderReport(data []byte) (string, error) {
	rows, err := readRows(data)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	sb.WriteString("| Run | Scenario | Size | Result | Server | Target | Verdict |\n")
	sb.WriteString("| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		writeRow(&sb, r.str("label"), r.str("scenario"), r.str("params"), r.summary(), r.server(), r.str("expect"), r.verdict())
	}
	return sb.String(), nil
}

// readRows decodes the result lines of data, in file order, skipping lines
// that are not JSON objects.
func readRows(data []byte) ([]row, error) {
	var rows []row
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 || text[0] != '{' {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(text, &m); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		rows = append(rows, row{m})
	}
	return rows, sc.Err()
}

// writeRow writes one Markdown table row, a dash in each empty cell and
// pipes escaped.
func writeRow(sb *strings.Builder, cells ...string) {
	for i, c := range cells {
		if c == "" {
			c = "—"
		}
		cells[i] = strings.ReplaceAll(c, "|", `\|`)
	}
	sb.WriteString("| " + strings.Join(cells, " | ") + " |\n")
}

// row reads one decoded result line.
type row struct{ m map[string]any }

func (r row) str(k string) string {
	s, _ := r.m[k].(string)
	return s
}

// num returns a numeric field; ok is false when it is absent or null.
func (r row) num(k string) (float64, bool) {
	v, ok := r.m[k].(float64)
	return v, ok
}

// f formats a numeric field, "n/a" when it was not measured.
func (r row) f(k string, format func(float64) string) string {
	v, ok := r.num(k)
	if !ok {
		return "n/a"
	}
	return format(v)
}

func (r row) summary() string {
	if e := r.str("error"); e != "" {
		return "error: " + e
	}
	var s string
	lat := func() string {
		return fmt.Sprintf("p50/p95/p99/max %s/%s/%s/%s ms",
			r.f("latency_p50_ms", ms), r.f("latency_p95_ms", ms), r.f("latency_p99_ms", ms), r.f("latency_max_ms", ms))
	}
	switch r.str("scenario") {
	case scenarioFanout:
		s = fmt.Sprintf("loss %s (%s of %s delivered), %s, %s deliveries/s, sent %s of nominal",
			r.f("loss", pct), r.f("delivered", count), r.f("expected", count), lat(),
			r.f("delivered_per_s", count), r.f("sent_fraction_of_nominal", pct))
	case scenarioIdle:
		s = fmt.Sprintf("%s B RSS/conn (%s → %s), joined in %s s",
			r.f("rss_per_conn_bytes", count), r.f("rss_before_bytes", mib), r.f("rss_after_bytes", mib), r.f("connect_s", secs))
	case scenarioJoinstorm:
		s = fmt.Sprintf("views complete in %s s (all joined %s s), %s presence msgs carrying %s entries, join p99 %s ms",
			r.f("view_complete_s", secs), r.f("joined_all_s", secs), r.f("presence_messages", count),
			r.f("presence_entries", count), r.f("join_p99_ms", ms))
	case scenarioDoc:
		s = fmt.Sprintf("loss %s (%s of %s updates delivered), %s, %s updates/s, sent %s of nominal",
			r.f("loss", pct), r.f("delivered", count), r.f("expected", count), lat(),
			r.f("delivered_per_s", count), r.f("sent_fraction_of_nominal", pct))
	case scenarioChat:
		s = fmt.Sprintf("echo %s, %s persisted/s, lost %s, sent %s of nominal",
			lat(), r.f("persisted_per_s", count), r.f("lost", count), r.f("sent_fraction_of_nominal", pct))
	}
	s += "; client CPU " + r.f("client_cpu_fraction", pct)
	if w, ok := r.m["warnings"].([]any); ok && len(w) > 0 {
		parts := make([]string, 0, len(w))
		for _, x := range w {
			if t, ok := x.(string); ok {
				parts = append(parts, t)
			}
		}
		s += "; ⚠ " + strings.Join(parts, "; ")
	}
	return s
}

// server summarises the measured cost of the server (of all its nodes
// together, for a cluster) and of Redis.
func (r row) server() string {
	var parts []string
	if _, ok := r.num("server_cpu_s"); ok {
		s := fmt.Sprintf("%s CPU-s, RSS %s", r.f("server_cpu_s", secs), r.f("server_rss_bytes", mib))
		if _, ok := r.num("deliveries_per_server_cpu_s"); ok {
			s = r.f("deliveries_per_server_cpu_s", count) + " deliveries/CPU-s; " + s
		}
		if n, _ := r.num("nodes"); n > 1 {
			s = fmt.Sprintf("%d nodes together: %s", int(n), s)
		}
		parts = append(parts, s)
	}
	if _, ok := r.num("redis_cpu_s"); ok {
		s := "Redis " + r.f("redis_cpu_s", secs) + " CPU-s"
		if _, ok := r.num("redis_cpu_ms_per_1k_deliveries"); ok {
			s += ", " + r.f("redis_cpu_ms_per_1k_deliveries", ms) + " CPU-ms/1k deliveries"
		}
		if split := r.redisSplit(); split != "" {
			s += " (by process " + split + " s)"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// redisSplit renders each Redis process's CPU seconds, "0.41/0.39/0.44",
// when there are several (a Redis Cluster's shards).
func (r row) redisSplit() string {
	procs, _ := r.m["redis_procs"].([]any)
	if len(procs) < 2 {
		return ""
	}
	cpus := make([]string, 0, len(procs))
	for _, p := range procs {
		m, _ := p.(map[string]any)
		v, ok := m["cpu_s"].(float64)
		if !ok {
			return ""
		}
		cpus = append(cpus, strconv.FormatFloat(v, 'f', 2, 64))
	}
	return strings.Join(cpus, "/")
}

func (r row) verdict() string {
	p, ok := r.m["pass"].(bool)
	switch {
	case !ok && r.str("error") != "":
		return "❌ error"
	case !ok:
		return ""
	case p:
		return "✅ pass"
	}
	var missed []string
	if ms, ok := r.m["missed"].([]any); ok {
		for _, x := range ms {
			if t, ok := x.(string); ok {
				missed = append(missed, t)
			}
		}
	}
	if len(missed) == 0 {
		return "❌ fail"
	}
	return "❌ missed " + strings.Join(missed, ", ")
}

// Number formats for the table.

func pct(v float64) string { return strconv.FormatFloat(100*v, 'f', 2, 64) + " %" }

func ms(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

func secs(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }

func mib(v float64) string { return strconv.FormatFloat(v/(1<<20), 'f', 1, 64) + " MiB" }

// count formats a whole number with thousands separators.
func count(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	n := int64(math.Round(v))
	neg := n < 0
	if neg {
		n = -n
	}
	s := strconv.FormatInt(n, 10)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
