package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// The cluster comparison (-cluster-report): each fanout run over several
// nodes or with Redis measured, beside the single-node run of the same
// file with the same size, so that what a cluster costs is read off one
// run on one machine rather than across tables measured on different days.

// writeClusterReportFile renders the cluster comparison of the result lines
// in path.
func writeClusterReportFile(path string, w io.Writer) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	table, err := renderClusterReport(b)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	_, err = io.WriteString(w, table)
	return err
}

// isCluster reports whether a result line measured a cluster: several
// nodes, or Redis.
func (r row) isCluster() bool {
	n, _ := r.num("nodes")
	_, redis := r.num("redis_cpu_s")
	return n > 1 || redis
}

// renderClusterReport renders, in file order, every fanout cluster run and
// every single-node run one of them is compared with: the last single-node
// fanout line before or after it with the same params (the same size).
func renderClusterReport(data []byte) (string, error) {
	rows, err := readRows(data)
	if err != nil {
		return "", err
	}
	base := map[int]int{} // cluster row → its single-node row
	shown := map[int]bool{}
	for i, r := range rows {
		if r.str("scenario") != scenarioFanout || !r.isCluster() {
			continue
		}
		shown[i] = true
		for j, s := range rows {
			if s.str("scenario") == scenarioFanout && !s.isCluster() && s.str("params") == r.str("params") && s.str("error") == "" {
				base[i] = j
				shown[j] = true
			}
		}
	}
	var sb strings.Builder
	sb.WriteString("| Run | Nodes | Size | Loss | p50 / p99 ms | p99 vs 1 node | Deliveries per node-CPU-s | vs 1 node | Redis CPU-ms per 1k deliveries | Redis CPU-s by process | Verdict |\n")
	sb.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for i, r := range rows {
		if !shown[i] {
			continue
		}
		nodes, _ := r.num("nodes")
		setup := plural(max(int(nodes), 1), "node")
		if procs, _ := r.m["redis_procs"].([]any); len(procs) > 1 {
			setup += fmt.Sprintf(", Redis ×%d", len(procs))
		} else if r.isCluster() {
			setup += ", Redis"
		}
		var p99Vs, cpuVs string
		var relMissed []string
		if j, ok := base[i]; ok {
			b := rows[j]
			p99Vs = ratio(r, b, "latency_p99_ms", func(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) + "×" })
			cpuVs = ratio(r, b, "deliveries_per_server_cpu_s", pct)
			if p99Vs != "" {
				p99Vs += " " + b.str("label")
			}
			relMissed = r.relativeMisses(b)
			if cpuVs != "" {
				cpuVs += " of " + b.str("label")
			}
		}
		loss, lat := r.f("loss", pct), r.f("latency_p50_ms", ms)+" / "+r.f("latency_p99_ms", ms)
		if e := r.str("error"); e != "" {
			loss, lat = "error: "+e, ""
		}
		redis := ""
		if _, ok := r.num("redis_cpu_ms_per_1k_deliveries"); ok {
			redis = r.f("redis_cpu_ms_per_1k_deliveries", ms)
		}
		split := r.redisSplit()
		if c, ok := r.num("redis_cpu_s"); ok && split == "" {
			split = secs(c)
		}
		if q, ok := r.num("redis_cpu_max_min_ratio"); ok {
			split += fmt.Sprintf(" (max/min %.2f)", q)
		}
		dpc := ""
		if _, ok := r.num("deliveries_per_server_cpu_s"); ok {
			dpc = r.f("deliveries_per_server_cpu_s", count)
		}
		writeRow(&sb, r.str("label"), setup, r.str("params"), loss, lat, p99Vs, dpc, cpuVs, redis, split, r.clusterVerdict(relMissed))
	}
	return sb.String(), nil
}

// maxP99VsOneNode is the cluster target on latency: a cluster run's p99
// within twice that of its single-node twin measured in the same file.
// -expect cannot check it (one olsbench run sees one line), so the table
// does.
const maxP99VsOneNode = 2

// relativeMisses lists the targets relative to the single-node run b that
// cluster run r misses.
func (r row) relativeMisses(b row) []string {
	x, ok1 := r.num("latency_p99_ms")
	y, ok2 := b.num("latency_p99_ms")
	if !ok1 || !ok2 || y <= 0 || r.str("error") != "" {
		return nil
	}
	if q := x / y; q > maxP99VsOneNode {
		return []string{fmt.Sprintf("p99 vs 1 node<=%d× (got %.2f×)", maxP99VsOneNode, q)}
	}
	return nil
}

// clusterVerdict is r's verdict with the relative targets it missed: a run
// that met its own -expect but not those is no pass.
func (r row) clusterVerdict(relMissed []string) string {
	v := r.verdict()
	if len(relMissed) == 0 {
		return v
	}
	switch {
	case strings.HasPrefix(v, "❌ missed "):
		return v + ", " + strings.Join(relMissed, ", ")
	case strings.HasPrefix(v, "❌"):
		return v // an error or a failure says more than a miss
	}
	return "❌ missed " + strings.Join(relMissed, ", ")
}

// ratio formats r's field k over b's, "" when either is missing or b's is 0.
func ratio(r, b row, k string, format func(float64) string) string {
	x, ok1 := r.num(k)
	y, ok2 := b.num(k)
	if !ok1 || !ok2 || y == 0 {
		return ""
	}
	return format(x / y)
}
