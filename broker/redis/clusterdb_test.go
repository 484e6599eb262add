package redis

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestClusterURLWithADatabaseIsRefused: go-redis ignores the path of a
// cluster URL, so /2 would start a node on database 0; the broker
// refuses it before dialling, and takes /0 and / as no database.
func TestClusterURLWithADatabaseIsRefused(t *testing.T) {
	for raw, want := range map[string]string{
		"redis://127.0.0.1:7000/2?addr=127.0.0.1:7001":   "a cluster has only database 0: drop /2 from the URL",
		"redis://127.0.0.1:7000/abc?addr=127.0.0.1:7001": "drop /abc",
		"redis://127.0.0.1:7000/0?addr=127.0.0.1:7001":   "",
		"redis://127.0.0.1:7000/?addr=127.0.0.1:7001":    "",
		"redis://127.0.0.1:7000?addr=127.0.0.1:7001":     "",
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		co, loader, err := clusterOptions(u, u.Query(), Options{OpTimeout: time.Second})
		if err == nil {
			loader.close()
		}
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", raw, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: %v (options made: %v), want an error saying %q", raw, err, co != nil, want)
		}
	}
}
