package livesync

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestLimitTableCoversLimits: one row per Limits field, in the struct's
// order, each row setting the field it names and no other.
func TestLimitTableCoversLimits(t *testing.T) {
	typ := reflect.TypeFor[Limits]()
	if len(limitTable) != typ.NumField() {
		t.Fatalf("%d rows for %d Limits fields", len(limitTable), typ.NumField())
	}
	for i, r := range limitTable {
		info := r.info()
		if f := typ.Field(i); f.Name != info.Field {
			t.Fatalf("row %d is %s, want %s (the struct's order)", i, info.Field, f.Name)
		}
		var l Limits
		v := "7"
		if typ.Field(i).Type == reflect.TypeFor[time.Duration]() {
			v = "7s"
		}
		if err := r.value(&l).Set(v); err != nil {
			t.Fatalf("%s: set %s: %v", info.Field, v, err)
		}
		got := reflect.ValueOf(l)
		for j := range typ.NumField() {
			if set := !got.Field(j).IsZero(); set != (j == i) {
				t.Fatalf("row %s set %s", info.Field, typ.Field(j).Name)
			}
		}
		if strings.Count(info.Usage, "`") != 2 {
			t.Errorf("%s: usage %q wants one word in backquotes, its flag's argument", info.Field, info.Usage)
		}
	}
}

func TestKebab(t *testing.T) {
	for field, want := range map[string]string{
		"EventRate":         "event-rate",
		"SendQueueBytes":    "send-queue-bytes",
		"ConnectionsPerIP":  "connections-per-ip",
		"MaxMessageBytes":   "max-message-bytes",
		"MaxRoomIDBytes":    "max-room-id-bytes",
		"ReadHeaderTimeout": "read-header-timeout",
		"IdleTimeout":       "idle-timeout",
	} {
		if got := kebab(field); got != want {
			t.Errorf("kebab(%s) = %s, want %s", field, got, want)
		}
	}
}

// TestResolveLimitsDefaults pins every default: the table must give what
// the library gave before it existed.
func TestResolveLimitsDefaults(t *testing.T) {
	got, err := resolveLimits(Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{
		MaxMessageBytes: 64 << 10, SendQueueBytes: 1 << 20,
		PingInterval: 25 * time.Second, PongTimeout: 60 * time.Second,
		HandshakeTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		ConnectionsPerIP: 1000, MaxConnections: 0,
		EventRate: 100, EventBurst: 200, ChatRate: 10, ChatBurst: 20, MaxViolations: 100,
		MaxRoomIDBytes: 256, MaxPresenceBytes: 8 << 10, MaxChatBytes: 16 << 10,
		HistoryRate: 5, HistoryBurst: 10, HistoryBytes: 256 << 10, StoreTimeout: 5 * time.Second,
		MaxDocMessageBytes: 8 << 20, MaxDocBytes: 64 << 20, DocUpdateRate: 1 << 20,
		DocAwarenessRate: 60, DocAwarenessBurst: 120, DocSyncRate: 1, DocSyncBurst: 10,
		ReadHeaderTimeout: 10 * time.Second, RequestReadTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second,
	}
	if got != want {
		t.Fatalf("defaults\n got %+v\nwant %+v", got, want)
	}
	// ReadHeaderTimeout follows HandshakeTimeout when left alone.
	got, err = resolveLimits(Limits{HandshakeTimeout: 3 * time.Second})
	if err != nil || got.ReadHeaderTimeout != 3*time.Second {
		t.Fatalf("ReadHeaderTimeout %v (%v), want HandshakeTimeout's 3s", got.ReadHeaderTimeout, err)
	}
}

// TestResolveLimitsNegative: negative is off for the rows that allow it,
// resolving to what the enforcing code reads as off, and an error naming
// the field for every other row.
func TestResolveLimitsNegative(t *testing.T) {
	off := map[string]bool{"ConnectionsPerIP": true, "MaxConnections": true}
	for _, r := range limitTable {
		info := r.info()
		var l Limits
		v := "-1"
		if f, _ := reflect.TypeFor[Limits]().FieldByName(info.Field); f.Type == reflect.TypeFor[time.Duration]() {
			v = "-1s"
		}
		err := r.value(&l).Set(v)
		if off[info.Field] != (info.Off != "") {
			t.Errorf("%s: Off %q, want it off-able: %v", info.Field, info.Off, off[info.Field])
		}
		if !off[info.Field] {
			if err == nil || !strings.Contains(err.Error(), "must be positive (leave it out") {
				t.Errorf("flag -%s %s: err %v, want it refused with the advice to leave it out", info.Flag, v, err)
			}
			// Set it behind the flag's back, as a library user would.
			if f := reflect.ValueOf(&l).Elem().FieldByName(info.Field); f.Kind() == reflect.Float64 {
				f.SetFloat(-1)
			} else {
				f.SetInt(-1)
			}
			if _, err := resolveLimits(l); err == nil || !strings.Contains(err.Error(), "Limits."+info.Field+" ") {
				t.Errorf("%s -1: err %v, want one naming the field", info.Field, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("flag -%s %s: %v", info.Flag, v, err)
		}
		got, err := resolveLimits(l)
		if err != nil {
			t.Fatalf("%s negative: %v", info.Field, err)
		}
		again, err := resolveLimits(got)
		if err != nil || again != got {
			t.Fatalf("%s: resolving twice gives %+v (%v), want %+v", info.Field, again, err, got)
		}
	}
	got, _ := resolveLimits(Limits{ConnectionsPerIP: -5, MaxConnections: -5})
	if got.ConnectionsPerIP >= 0 || got.MaxConnections >= 0 {
		t.Fatalf("off limits resolved to %+v", got)
	}
	for _, rate := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, err := resolveLimits(Limits{ChatRate: rate}); err == nil || !strings.Contains(err.Error(), "ChatRate") {
			t.Fatalf("ChatRate %v: %v, want it refused", rate, err)
		}
	}
}

// TestRegisterFlags: a flag left alone leaves its field 0, a flag set
// sets it, a bad value is refused naming the flag, and -h shows every
// default.
func TestRegisterFlags(t *testing.T) {
	var l Limits
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	l.RegisterFlags(fs)
	if err := fs.Parse([]string{"-event-rate", "300", "-send-queue-bytes", "4096", "-store-timeout", "2s", "-connections-per-ip", "-1"}); err != nil {
		t.Fatal(err)
	}
	if want := (Limits{EventRate: 300, SendQueueBytes: 4096, StoreTimeout: 2 * time.Second, ConnectionsPerIP: -1}); l != want {
		t.Fatalf("got %+v, want %+v", l, want)
	}
	for _, args := range [][]string{
		{"-send-queue-bytes", "-1"}, {"-send-queue-bytes", "lots"}, {"-event-rate", "NaN"},
		{"-store-timeout", "5"}, {"-max-message-bytes", "99999999999999999999"},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		new(Limits).RegisterFlags(fs)
		if err := fs.Parse(args); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: err %v, want one naming %s", args, err, args[0])
		}
	}

	var help bytes.Buffer
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(&help)
	new(Limits).RegisterFlags(fs)
	fs.PrintDefaults()
	for _, info := range LimitTable() {
		def := info.Default
		if info.Field == "ReadHeaderTimeout" {
			def = "-handshake-timeout"
		}
		if !strings.Contains(help.String(), "-"+info.Flag+" ") || !strings.Contains(help.String(), "(default "+def+")") {
			t.Errorf("-h does not show -%s with its default %s:\n%s", info.Flag, def, help.String())
		}
	}
	if !strings.Contains(help.String(), "-event-rate events/s") {
		t.Errorf("-h does not name -event-rate's argument:\n%s", help.String())
	}
}

// TestZeroFlagIsRefused: 0 given to a limit's flag is refused, naming the
// default to leave it out for, except where the default is none.
func TestZeroFlagIsRefused(t *testing.T) {
	for _, r := range limitTable {
		info := r.info()
		var l Limits
		err := r.value(&l).Set("0")
		if info.Default == "none" {
			if err != nil {
				t.Errorf("-%s 0: %v, want it accepted (the default is none)", info.Flag, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "must be positive") {
			t.Errorf("-%s 0: err %v, want it refused", info.Flag, err)
		}
	}
}

// TestREADMELimitsTable compares the README's limits table with the
// table of limits, row by row: field, flag, default and what a negative
// value means (the fifth column, what the limit bounds, is prose).
func TestREADMELimitsTable(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := readmeLimits(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]bool{}
	for _, info := range LimitTable() {
		fields[info.Field] = true
		want := readmeRow(info)
		got, ok := rows[info.Field]
		switch {
		case !ok:
			t.Errorf("README's limits table has no row for %s; add\n%s <what it bounds> |", info.Field, want)
		case got != want:
			t.Errorf("README's limits table, row %s:\n got %s\nwant %s", info.Field, got, want)
		}
	}
	for field := range rows {
		if !fields[field] {
			t.Errorf("README's limits table has a row for %s, which is no Limits field", field)
		}
	}
}

// readmeRow is info as the README's first four columns spell it.
func readmeRow(info LimitInfo) string {
	def := "`" + info.Default + "`"
	if info.Default == "none" {
		def = "none"
	}
	off := "refused"
	if info.Off != "" {
		off = info.Off
	}
	return fmt.Sprintf("| `%s` | `-%s` | %s | %s |", info.Field, info.Flag, def, off)
}

// readmeLimits reads the table under "### Limits": its rows' first four
// columns, by field.
func readmeLimits(readme string) (map[string]string, error) {
	_, section, ok := strings.Cut(readme, "\n### Limits\n")
	if !ok {
		return nil, errors.New("README has no ### Limits section")
	}
	rows := map[string]string{}
	inTable := false
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "|") {
			if inTable {
				break
			}
			continue
		}
		inTable = true
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 5 {
			return nil, fmt.Errorf("README's limits table: row %q has %d columns, want 5 (field, flag, default, negative, what it bounds)", line, len(cells))
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		field := strings.Trim(cells[0], "`")
		if field == "field" || strings.HasPrefix(field, "---") {
			continue
		}
		rows[field] = fmt.Sprintf("| %s | %s | %s | %s |", cells[0], cells[1], cells[2], cells[3])
	}
	if len(rows) == 0 {
		return nil, errors.New("README's ### Limits section has no table")
	}
	return rows, nil
}
