package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const reportFixture = `{"label":"S1","scenario":"fanout","params":"200 rooms × 5 clients, every 100ms","window_s":20,"server_cpu_s":8,"server_rss_bytes":52428800,"client_cpu_fraction":0.4,"loss":0,"delivered":1600000,"expected":1600000,"latency_p50_ms":0.41,"latency_p95_ms":1.2,"latency_p99_ms":2.5,"latency_max_ms":9,"delivered_per_s":80000,"deliveries_per_server_cpu_s":200000,"sent_fraction_of_nominal":1,"expect":"loss<=0","pass":true}
some stray line from tee
{"label":"S4","scenario":"idle","params":"10000 conns, rooms of 10","rss_per_conn_bytes":7000,"rss_before_bytes":10485760,"rss_after_bytes":80485760,"connect_s":3.2,"server_cpu_s":null,"client_cpu_fraction":0.01,"expect":"rss_per_conn_bytes<=6144","pass":false,"missed":["rss_per_conn_bytes<=6144 (got 7000)"],"warnings":["a | b"]}
{"label":"S5","scenario":"joinstorm","params":"1000 conns","view_complete_s":null,"error":"connection 3: refused"}
{"label":"S6","scenario":"chat","params":"500 clients","latency_p99_ms":3.2,"persisted_per_s":2000,"lost":0}
`

func TestRenderReport(t *testing.T) {
	table, err := renderReport([]byte(reportFixture))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 6 {
		t.Fatalf("%d lines, want header, separator and 4 rows:\n%s", len(lines), table)
	}
	for _, want := range []struct {
		line int
		text string
	}{
		{2, "| S1 | fanout | 200 rooms × 5 clients, every 100ms | loss 0.00 % (1,600,000 of 1,600,000 delivered)"},
		{2, "200,000 deliveries/CPU-s; 8.000 CPU-s, RSS 50.0 MiB"},
		{2, "| loss<=0 | ✅ pass |"},
		{3, "7,000 B RSS/conn (10.0 MiB → 76.8 MiB)"},
		{3, `⚠ a \| b`},
		{3, "❌ missed rss_per_conn_bytes<=6144 (got 7000)"},
		{4, "error: connection 3: refused"},
		{4, "❌ error"},
		{5, "p50/p95/p99/max n/a/n/a/3.20/n/a ms, 2,000 persisted/s"},
	} {
		if !strings.Contains(lines[want.line], want.text) {
			t.Errorf("line %d = %q\nwant it to contain %q", want.line, lines[want.line], want.text)
		}
	}
	// Every row has the header's seven columns (escaped pipes excluded).
	for i, l := range lines {
		if n := strings.Count(strings.ReplaceAll(l, `\|`, ""), "|"); n != 8 {
			t.Errorf("line %d has %d pipes: %q", i, n, l)
		}
	}
}

func TestRenderReportErrors(t *testing.T) {
	if _, err := renderReport([]byte("{not json\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("err = %v", err)
	}
	table, err := renderReport(nil)
	if err != nil || strings.Count(table, "\n") != 2 {
		t.Fatalf("empty input: %q, %v", table, err)
	}
	if err := writeReportFile(filepath.Join(t.TempDir(), "missing"), &bytes.Buffer{}); err == nil {
		t.Fatal("missing file accepted")
	}
	path := filepath.Join(t.TempDir(), "r.jsonl")
	if err := os.WriteFile(path, []byte(reportFixture), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run([]string{"-report", path}, &out, &bytes.Buffer{}); code != exitOK || !strings.Contains(out.String(), "| S6 |") {
		t.Fatalf("run -report: exit %d, output %q", code, out.String())
	}
}

func TestCount(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1234: "-1,234", 12.6: "13"} {
		if got := count(in); got != want {
			t.Errorf("count(%v) = %q, want %q", in, got, want)
		}
	}
}
