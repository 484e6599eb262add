package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const clusterFixture = `{"label":"S1","scenario":"fanout","params":"200 rooms × 5 clients, every 100ms","nodes":1,"server_cpu_s":8,"server_rss_bytes":1,"loss":0,"latency_p50_ms":0.2,"latency_p99_ms":1,"deliveries_per_server_cpu_s":100000}
{"label":"S2","scenario":"fanout","params":"1 room × 500 clients, every 1s","nodes":1,"server_cpu_s":5,"loss":0,"latency_p50_ms":13,"latency_p99_ms":26,"deliveries_per_server_cpu_s":1000000}
{"label":"S4","scenario":"idle","params":"10000 conns, rooms of 10","nodes":1}
{"label":"C1","scenario":"fanout","params":"200 rooms × 5 clients, every 100ms","nodes":3,"server_cpu_s":16,"server_rss_bytes":3,"loss":0,"latency_p50_ms":0.5,"latency_p99_ms":1.5,"deliveries_per_server_cpu_s":50000,"redis_cpu_s":2,"redis_procs":[{"pid":7,"cpu_s":2,"rss_bytes":1}],"redis_cpu_ms_per_1k_deliveries":2.5,"expect":"loss<=0","pass":true}
{"label":"C3","scenario":"fanout","params":"200 rooms × 5 clients, every 100ms","nodes":3,"server_cpu_s":16,"loss":0.01,"latency_p50_ms":0.5,"latency_p99_ms":3,"deliveries_per_server_cpu_s":40000,"redis_cpu_s":3,"redis_procs":[{"pid":7,"cpu_s":1},{"pid":8,"cpu_s":0.5},{"pid":9,"cpu_s":1.5}],"redis_cpu_max_min_ratio":3,"redis_cpu_ms_per_1k_deliveries":3.75}
`

func TestRenderClusterReport(t *testing.T) {
	table, err := renderClusterReport([]byte(clusterFixture))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(table), "\n")
	// S1 (C1's and C3's single node), C1, C3; not S2 (no cluster run of its
	// size) nor S4.
	if len(lines) != 5 {
		t.Fatalf("%d lines, want header, separator and 3 rows:\n%s", len(lines), table)
	}
	for _, want := range []struct {
		line int
		text string
	}{
		{2, "| S1 | 1 node | 200 rooms × 5 clients, every 100ms | 0.00 % | 0.20 / 1.00 | — | 100,000 | — | — | — | — |"},
		{3, "| C1 | 3 nodes, Redis | 200 rooms × 5 clients, every 100ms | 0.00 % | 0.50 / 1.50 | 1.50× S1 | 50,000 | 50.00 % of S1 | 2.50 | 2.000 | ✅ pass |"},
		{4, "| C3 | 3 nodes, Redis ×3 |"},
		{4, "| 3.00× S1 | 40,000 | 40.00 % of S1 | 3.75 | 1.00/0.50/1.50 (max/min 3.00) |"},
	} {
		if !strings.Contains(lines[want.line], want.text) {
			t.Errorf("line %d = %q\nwant it to contain %q", want.line, lines[want.line], want.text)
		}
	}
	for i, l := range lines {
		if n := strings.Count(l, "|"); n != 12 {
			t.Errorf("line %d has %d pipes: %q", i, n, l)
		}
	}

	// The main table's server cell names the nodes and Redis.
	rows, err := readRows([]byte(clusterFixture))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rows[4].server(), "3 nodes together: 40,000 deliveries/CPU-s; 16.000 CPU-s, RSS n/a; "+
		"Redis 3.000 CPU-s, 3.75 CPU-ms/1k deliveries (by process 1.00/0.50/1.50 s)"; got != want {
		t.Errorf("server cell = %q\nwant %q", got, want)
	}
	if got := rows[0].server(); strings.Contains(got, "nodes") || strings.Contains(got, "Redis") {
		t.Errorf("single-node server cell = %q", got)
	}
}

func TestClusterReportFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.jsonl")
	if err := os.WriteFile(path, []byte(clusterFixture), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run([]string{"-cluster-report", path}, &out, &bytes.Buffer{}); code != exitOK || !strings.Contains(out.String(), "| C3 |") {
		t.Fatalf("run -cluster-report: exit %d, output %q", code, out.String())
	}
	if code := run([]string{"-cluster-report", path + ".missing"}, &out, &bytes.Buffer{}); code != exitFailed {
		t.Fatalf("missing file: exit %d", code)
	}
}

// TestClusterVerdictIncludesP99: a cluster run that met its own -expect
// but whose p99 is more than twice its single-node twin's is reported as
// a miss, not a pass; within twice it passes, and a miss of its own
// -expect keeps its reason beside the p99 one.
func TestClusterVerdictIncludesP99(t *testing.T) {
	const s1 = `{"label":"S1","scenario":"fanout","params":"p","nodes":1,"latency_p99_ms":4,"deliveries_per_server_cpu_s":1}` + "\n"
	for _, c := range []struct {
		line, want string
	}{
		{`{"label":"C1","scenario":"fanout","params":"p","nodes":3,"latency_p99_ms":23.2,"expect":"loss<=0","pass":true}`, "❌ missed p99 vs 1 node<=2× (got 5.80×)"},
		{`{"label":"C1","scenario":"fanout","params":"p","nodes":3,"latency_p99_ms":8,"expect":"loss<=0","pass":true}`, "✅ pass"},
		{`{"label":"C3","scenario":"fanout","params":"p","nodes":3,"latency_p99_ms":308,"expect":"loss<=0","pass":false,"missed":["loss<=0 (got 0.01)"]}`, "❌ missed loss<=0 (got 0.01), p99 vs 1 node<=2× (got 77.00×)"},
	} {
		table, err := renderClusterReport([]byte(s1 + c.line + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(table), "\n")
		if got := lines[len(lines)-1]; !strings.HasSuffix(got, "| "+c.want+" |") {
			t.Errorf("row %q\nwant verdict %q", got, c.want)
		}
	}
}
