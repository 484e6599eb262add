package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/openlivesync/livesync/internal/livesynctest"
)

func TestJWTSecretFlagGuardsConnections(t *testing.T) {
	secret := strings.Repeat("s", 32)
	url := serveConfigured(t, "-jwt-secret", secret, "-allowed-origins", "https://app.example.com")

	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "u1", "name": "Ada", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	// No token: closed with 4401.
	if code := livesynctest.Dial(t, url).WaitClosed(); code != 4401 {
		t.Fatalf("no token: close %d, want 4401", code)
	}
	// A valid token in the query: served, and the identity shows.
	rj := livesynctest.Dial(t, url+"?access_token="+token).Join("r", nil)
	if e := rj.Presence[rj.ConnectionID]; e.UserID != "u1" || e.Name != "Ada" {
		t.Fatalf("join with token: entry %+v, want user u1 named Ada", e)
	}
	// A browser from an origin not on the list is refused before upgrade.
	_, err = livesynctest.TryDial(t, url+"?access_token="+token, http.Header{"Origin": {"https://evil.example.com"}})
	if livesynctest.StatusOf(err) != http.StatusForbidden {
		t.Fatalf("foreign origin: %v, want HTTP 403", err)
	}
}

func TestAuthFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-jwt-secret", strings.Repeat("s", 32), "-jwks-url", "http://127.0.0.1:1/jwks"},
		{"-jwt-issuer", "https://issuer"},
	} {
		if _, err := parseConfig(args, noEnv, io.Discard); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
	// A short secret or an unreachable JWKS fails at start-up.
	for _, args := range [][]string{{"-jwt-secret", "short"}, {"-jwks-url", "http://127.0.0.1:1/jwks"}} {
		cfg, err := parseConfig(args, noEnv, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := cfg.build(context.Background(), io.Discard); err == nil {
			t.Errorf("%v: built", args)
		}
	}
}

func TestAPIKeyFlagMountsTheAPI(t *testing.T) {
	for _, key := range []string{"", "0123456789abcdef0123"} {
		srv := buildServer(t, "-api-key", key)
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/api/rooms", nil)
		req.Header.Set("Authorization", "Bearer 0123456789abcdef0123")
		srv.Handler().ServeHTTP(rec, req)
		want := 200
		if key == "" {
			want = 404
		}
		if rec.Code != want {
			t.Errorf("-api-key %q: GET /api/rooms = %d, want %d", key, rec.Code, want)
		}
		srv.Shutdown(context.Background())
	}
}
