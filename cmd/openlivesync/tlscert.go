package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// certCheckInterval is how often the certificate files' modification
// times are looked at: a renewal is picked up within seconds, and a stat
// of two files that often costs nothing.
const certCheckInterval = 5 * time.Second

// certHolder serves the certificate of a PEM pair (-tls-cert, -tls-key)
// and loads it again when the files change or on SIGHUP, so that a
// renewed certificate needs no restart and drops no connection. A reload
// that fails keeps the certificate being served: a renewal tool that
// writes the two files one after the other must not take the site down
// between the two writes.
type certHolder struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]

	mu   sync.Mutex // serialises loads; guards seen
	seen fileStamp  // the files as they were at the last load attempt
}

// fileStamp is what tells that a file was replaced or rewritten.
type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// stamp looks at the files now. A file that cannot be read gets a zero
// stamp, which differs from any readable one.
func (h *certHolder) stamp() fileStamp {
	var s fileStamp
	if fi, err := os.Stat(h.certFile); err == nil {
		s.certMod, s.certSize = fi.ModTime(), fi.Size()
	}
	if fi, err := os.Stat(h.keyFile); err == nil {
		s.keyMod, s.keySize = fi.ModTime(), fi.Size()
	}
	return s
}

// loadCertHolder loads the pair, failing when either file is unreadable,
// not PEM, or the key does not match the certificate.
func loadCertHolder(certFile, keyFile string) (*certHolder, error) {
	h := &certHolder{certFile: certFile, keyFile: keyFile}
	if err := h.load(); err != nil {
		return nil, err
	}
	return h, nil
}

// load reads the pair and serves it if it is usable.
func (h *certHolder) load() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seen = h.stamp()
	c, err := tls.LoadX509KeyPair(h.certFile, h.keyFile)
	if err != nil {
		return fmt.Errorf("-tls-cert %s, -tls-key %s: %w", h.certFile, h.keyFile, err)
	}
	h.cert.Store(&c)
	return nil
}

// changed reports whether the files differ from the last load attempt.
func (h *certHolder) changed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stamp() != h.seen
}

// GetCertificate is the tls.Config hook: every handshake gets the pair
// loaded last.
func (h *certHolder) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return h.cert.Load(), nil
}

// tlsConfig is the listener's configuration. HTTP/1.1 only: a WebSocket
// upgrade needs it, and an HTTP/2 connection could not be upgraded.
func (h *certHolder) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: h.GetCertificate,
		NextProtos:     []string{"http/1.1"},
	}
}

// reload loads the pair again and logs the outcome; why says what asked.
func (h *certHolder) reload(log *slog.Logger, why string) {
	if err := h.load(); err != nil {
		log.Error("TLS certificate not reloaded; still serving the previous one", "trigger", why, "err", err)
		return
	}
	attrs := []any{"trigger", why}
	if leaf := h.cert.Load().Leaf; leaf != nil {
		attrs = append(attrs, "subject", leaf.Subject.String(), "expires", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	log.Info("TLS certificate reloaded", attrs...)
}

// watchReloads reloads the certificate (h, which may be nil: no TLS) on
// each signal from hup and, every interval, when its files changed, until
// ctx ends. Without TLS a SIGHUP is only logged: systemd's ExecReload or
// a habit of sending it must not kill the server.
func watchReloads(ctx context.Context, h *certHolder, hup <-chan os.Signal, interval time.Duration, log *slog.Logger) {
	var tick <-chan time.Time
	if h != nil {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if h == nil {
				log.Info("SIGHUP: nothing to reload (no -tls-cert)")
				continue
			}
			h.reload(log, "SIGHUP")
		case <-tick:
			if h.changed() {
				h.reload(log, "files changed")
			}
		}
	}
}
