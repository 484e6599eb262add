package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Common holds the fields every scenario's result line carries.
type Common struct {
	Label    string `json:"label,omitempty"`
	Scenario string `json:"scenario"`
	Params   string `json:"params"`
	// URL is -url's list, comma-separated; Nodes is how many URLs it holds.
	URL   string `json:"url"`
	Nodes int    `json:"nodes"`
	Start string `json:"start"`
	// WindowS is the length of the measurement window in seconds.
	WindowS float64 `json:"window_s"`
	// ServerCPUS is the server's CPU seconds over the window, of all the
	// -server-pid processes together; null without -server-pid.
	ServerCPUS *float64 `json:"server_cpu_s"`
	// ServerRSSBytes is the server's resident memory at the window's end,
	// of all the processes together.
	ServerRSSBytes *int64 `json:"server_rss_bytes"`
	// ServerProcs breaks the two down per process, when there are several.
	ServerProcs []ProcCost `json:"server_procs,omitempty"`
	// RedisCPUS is the CPU seconds over the window of all the -redis-pid
	// processes together, RedisProcs the same per process; absent without
	// -redis-pid.
	RedisCPUS  *float64   `json:"redis_cpu_s,omitempty"`
	RedisProcs []ProcCost `json:"redis_procs,omitempty"`
	// RedisCPUMaxMinRatio is the busiest Redis process's CPU over the
	// idlest's: with one process per shard of a Redis Cluster, how evenly
	// the shards shared the work.
	RedisCPUMaxMinRatio *float64 `json:"redis_cpu_max_min_ratio,omitempty"`
	// ClientCPUFraction is the generator's CPU use over the window in cores
	// (1.0 = one core busy); ClientCPUs is how many it may use.
	ClientCPUFraction float64 `json:"client_cpu_fraction"`
	ClientCPUs        int     `json:"client_cpus"`
	// Errors counts server error frames by code.
	Errors map[string]int64 `json:"errors,omitempty"`
	// Disconnects counts connections the server closed during the run.
	Disconnects int64    `json:"disconnects"`
	Warnings    []string `json:"warnings,omitempty"`
	Expect      string   `json:"expect,omitempty"`
	Pass        *bool    `json:"pass,omitempty"`
	Missed      []string `json:"missed,omitempty"`
	// Error is set when the run could not complete; other figures are then
	// partial or zero.
	Error string `json:"error,omitempty"`
}

// common returns the result's shared part; every result type embeds Common.
func (c *Common) common() *Common { return c }

// result is any scenario's result line.
type result interface{ common() *Common }

// FanoutResult is the fanout scenario's line.
type FanoutResult struct {
	Common
	Rooms          int     `json:"rooms"`
	ClientsPerRoom int     `json:"clients_per_room"`
	IntervalMS     float64 `json:"interval_ms"`
	// Sent counts broadcast_event frames sent inside the window; Expected is
	// Sent × (clients_per_room − 1), the deliveries a lossless server makes.
	Deliveries
	// Duplicates, Reordered, Misrouted and SelfDeliveries should all be 0:
	// a frame seen twice, a sender's frames out of order, a frame from
	// another room, an event echoed to its sender.
	Duplicates     int64   `json:"duplicates"`
	Reordered      int64   `json:"reordered"`
	Misrouted      int64   `json:"misrouted"`
	SelfDeliveries int64   `json:"self_deliveries"`
	DeliveredPerS  float64 `json:"delivered_per_s"`
	LatencySummary
	DeliveriesPerServerCPUS *float64 `json:"deliveries_per_server_cpu_s"`
	// RedisCPUMSPer1kDeliveries is Redis's CPU milliseconds per 1,000
	// deliveries: what the cluster's broker costs per unit of work.
	RedisCPUMSPer1kDeliveries *float64 `json:"redis_cpu_ms_per_1k_deliveries,omitempty"`
	SendStats
}

// SendStats is the sending side of a timed load (fanout, chat).
type SendStats struct {
	// SentFractionOfNominal is Sent over the sends the window holds at the
	// configured rate: below 1, the generator did not keep up.
	SentFractionOfNominal float64 `json:"sent_fraction_of_nominal"`
	SendErrors            int64   `json:"send_errors"`
	// SendBackpressure counts sends skipped because the server had let the
	// connection's socket buffer fill up.
	SendBackpressure int64 `json:"send_backpressure"`
}

// IdleResult is the idle scenario's line.
type IdleResult struct {
	Common
	Conns    int     `json:"conns"`
	RoomSize int     `json:"room_size"`
	ConnectS float64 `json:"connect_s"`
	// RSSBeforeBytes is the server's RSS before the first connection,
	// RSSAfterBytes after everyone joined and the settle period passed.
	RSSBeforeBytes  *int64 `json:"rss_before_bytes"`
	RSSAfterBytes   *int64 `json:"rss_after_bytes"`
	RSSPerConnBytes *int64 `json:"rss_per_conn_bytes"`
}

// JoinstormResult is the joinstorm scenario's line.
type JoinstormResult struct {
	Common
	Conns    int `json:"conns"`
	Inflight int `json:"inflight"`
	// ViewCompleteS is the time from the first dial until every client's
	// view (room_joined snapshot plus applied deltas) held all members.
	ViewCompleteS *float64 `json:"view_complete_s"`
	// JoinedAllS is the time until the last room_joined arrived.
	JoinedAllS       float64 `json:"joined_all_s"`
	CompleteViews    int64   `json:"complete_views"`
	PresenceMessages int64   `json:"presence_messages"`
	PresenceEntries  int64   `json:"presence_entries"`
	SnapshotEntries  int64   `json:"snapshot_entries"`
	// DuplicateJoins counts joined entries for members already in a view;
	// UnknownLeaves counts left ids not in the view; ForeignIDs counts
	// presence entries that belong to none of this run's connections. All
	// should be 0.
	DuplicateJoins int64 `json:"duplicate_joins"`
	UnknownLeaves  int64 `json:"unknown_leaves"`
	ForeignIDs     int64 `json:"foreign_ids"`
	// JoinP50MS etc. time one client's dial until its room_joined.
	JoinP50MS float64 `json:"join_p50_ms"`
	JoinP99MS float64 `json:"join_p99_ms"`
	JoinMaxMS float64 `json:"join_max_ms"`
}

// ChatResult is the chat scenario's line.
type ChatResult struct {
	Common
	Clients int     `json:"clients"`
	Rooms   int     `json:"rooms"`
	Rate    float64 `json:"rate"`
	// Sent counts send_chat frames inside the window; Echoed counts their
	// chat_message echoes back to the sender, i.e. chats the server stored.
	Sent   int64   `json:"sent"`
	Echoed int64   `json:"echoed"`
	Lost   int64   `json:"lost"`
	Loss   float64 `json:"loss"`
	LatencySummary
	PersistedPerS float64 `json:"persisted_per_s"`
	// OthersDelivered counts the same chats delivered to the other members.
	OthersDelivered int64 `json:"others_delivered"`
	MissingIDs      int64 `json:"missing_ids"`
	SendStats
}

// Deliveries are what a fan-out scenario sent and delivered inside the
// window, and the share of expected deliveries that never arrived.
type Deliveries struct {
	Sent      int64   `json:"sent"`
	Delivered int64   `json:"delivered"`
	Expected  int64   `json:"expected"`
	Loss      float64 `json:"loss"`
}

// DocResult is the doc scenario's line (D1).
type DocResult struct {
	Common
	Editors    int     `json:"editors"`
	IntervalMS float64 `json:"interval_ms"`
	// Sent counts keystrokes (one Yjs update each) sent inside the window;
	// Expected is Sent × (editors − 1), the deliveries a lossless server
	// makes; Delivered counts those received, by (client id, clock).
	Deliveries
	// Duplicates, Gaps, Foreign and Undecodable should all be 0: a
	// keystroke received twice, an editor's clocks received out of order,
	// a struct of a client that is not one of the editors, an update
	// that does not decode.
	Duplicates  int64 `json:"duplicates"`
	Gaps        int64 `json:"gaps"`
	Foreign     int64 `json:"foreign"`
	Undecodable int64 `json:"undecodable"`
	// SelfDeliveries counts keystrokes echoed to their own editor: the
	// Node server relays to the sender too, ours does not. Not an error,
	// and not counted in Delivered.
	SelfDeliveries int64   `json:"self_deliveries"`
	DeliveredPerS  float64 `json:"delivered_per_s"`
	LatencySummary
	DeliveriesPerServerCPUS *float64 `json:"deliveries_per_server_cpu_s"`
	SendStats
}

// resultTypes maps each scenario to its result type, for -expect checking.
var resultTypes = map[string]reflect.Type{
	scenarioFanout:    reflect.TypeFor[FanoutResult](),
	scenarioIdle:      reflect.TypeFor[IdleResult](),
	scenarioJoinstorm: reflect.TypeFor[JoinstormResult](),
	scenarioChat:      reflect.TypeFor[ChatResult](),
	scenarioDoc:       reflect.TypeFor[DocResult](),
}

// numericResultFields lists the JSON names of a scenario's numeric fields,
// the only ones an -expect target may name.
func numericResultFields(scenario string) map[string]bool {
	out := map[string]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch ft.Kind() {
			case reflect.Int, reflect.Int64, reflect.Float64:
				out[name] = true
			}
		}
	}
	if t, ok := resultTypes[scenario]; ok {
		walk(t)
	}
	return out
}

// Expectation is one -expect target such as latency_p99_ms<=50.
type Expectation struct {
	Key   string
	Op    string
	Value float64
}

// String renders the target as it is written on the command line.
func (e Expectation) String() string {
	return e.Key + e.Op + strconv.FormatFloat(e.Value, 'g', -1, 64)
}

// parseExpect parses comma-separated targets, checking each key against the
// scenario's numeric fields so that a typo fails at start, not after a run.
func parseExpect(s string, fields map[string]bool) ([]Expectation, error) {
	var out []Expectation
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("empty target in %q", s)
		}
		i := strings.IndexAny(part, "<>=")
		if i <= 0 {
			return nil, fmt.Errorf("target %q: want KEY<=N, KEY>=N, KEY<N, KEY>N or KEY==N", part)
		}
		key := strings.TrimSpace(part[:i])
		rest := part[i:]
		var op string
		for _, cand := range []string{"<=", ">=", "==", "<", ">"} {
			if strings.HasPrefix(rest, cand) {
				op = cand
				break
			}
		}
		if op == "" {
			return nil, fmt.Errorf("target %q: unknown operator", part)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest[len(op):]), 64)
		if err != nil || math.IsNaN(v) {
			return nil, fmt.Errorf("target %q: %q is not a number", part, strings.TrimSpace(rest[len(op):]))
		}
		if !fields[key] {
			known := make([]string, 0, len(fields))
			for k := range fields {
				known = append(known, k)
			}
			sort.Strings(known)
			return nil, fmt.Errorf("target %q: unknown result field %q (known: %s)", part, key, strings.Join(known, ", "))
		}
		out = append(out, Expectation{Key: key, Op: op, Value: v})
	}
	return out, nil
}

// checkExpectations evaluates the targets against the result's JSON fields
// and records the verdict in it. A null figure (e.g. server CPU without
// -server-pid) misses its target: an unmeasured target is not met.
func checkExpectations(r result, exps []Expectation) error {
	if len(exps) == 0 {
		return nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	c := r.common()
	var missed []string
	for _, e := range exps {
		v, ok := m[e.Key].(float64)
		if !ok {
			missed = append(missed, e.String()+" (not measured)")
			continue
		}
		if !e.holds(v) {
			missed = append(missed, fmt.Sprintf("%s (got %s)", e, strconv.FormatFloat(v, 'g', 6, 64)))
		}
	}
	pass := len(missed) == 0 && c.Error == ""
	c.Pass = &pass
	c.Missed = missed
	return nil
}

// holds reports whether v meets the target.
func (e Expectation) holds(v float64) bool {
	switch e.Op {
	case "<=":
		return v <= e.Value
	case ">=":
		return v >= e.Value
	case "<":
		return v < e.Value
	case ">":
		return v > e.Value
	case "==":
		return v == e.Value
	}
	return false
}

// encodeResult renders a result as one JSON line.
func encodeResult(r result) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if i := strings.IndexByte(string(b), '\n'); i >= 0 {
		return nil, errors.New("result JSON spans lines")
	}
	return append(b, '\n'), nil
}
